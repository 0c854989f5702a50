package checksum

import "golang.org/x/sys/cpu"

var (
	haveCLMUL = cpu.X86.HasPCLMULQDQ && cpu.X86.HasSSE2
	// haveVPCLMUL is the 256-bit form: x/sys/cpu reports VPCLMULQDQ only
	// with AVX-512, so CPUs that have it with AVX2 alone take the 128-bit
	// form.
	haveVPCLMUL = haveCLMUL && cpu.X86.HasAVX2 && cpu.X86.HasAVX512VPCLMULQDQ
)

// foldCLMUL folds p (a multiple of 128 bytes, at least 128) with the CRC
// register crc XORed into its first 8 bytes down to 16 bytes (lo, hi as
// little-endian halves) whose CRC from a zero register is the register after
// p. It is in fast_amd64.s.
//
//go:noescape
func foldCLMUL(crc uint64, p []byte, k *[6]uint64) (lo, hi uint64)

// foldVPCLMUL is foldCLMUL 256 bytes a round (p a multiple of 256 bytes,
// at least 256), in fast_amd64.s.
//
//go:noescape
func foldVPCLMUL(crc uint64, p []byte, k *[6]uint64) (lo, hi uint64)

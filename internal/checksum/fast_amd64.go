package checksum

import "golang.org/x/sys/cpu"

var haveCLMUL = cpu.X86.HasPCLMULQDQ && cpu.X86.HasSSE2

// foldCLMUL folds p (a multiple of 128 bytes, at least 128) with the CRC
// register crc XORed into its first 8 bytes down to 16 bytes (lo, hi as
// little-endian halves) whose CRC from a zero register is the register after
// p. It is in fast_amd64.s.
//
//go:noescape
func foldCLMUL(crc uint64, p []byte, k *[4]uint64) (lo, hi uint64)

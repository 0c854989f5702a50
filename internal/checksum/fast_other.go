//go:build !amd64

package checksum

const (
	haveCLMUL   = false
	haveVPCLMUL = false
)

func foldCLMUL(crc uint64, p []byte, k *[6]uint64) (lo, hi uint64) {
	panic("checksum: no carry-less multiply")
}

func foldVPCLMUL(crc uint64, p []byte, k *[6]uint64) (lo, hi uint64) {
	panic("checksum: no carry-less multiply")
}

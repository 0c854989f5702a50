//go:build !amd64

package checksum

const haveCLMUL = false

func foldCLMUL(crc uint64, p []byte, k *[4]uint64) (lo, hi uint64) {
	panic("checksum: no carry-less multiply")
}

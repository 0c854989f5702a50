//go:build !amd64

package checksum

func setWide(bool) {}

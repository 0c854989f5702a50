package checksum

// setWide turns the fold's 256-bit form on or off, for tests.
func setWide(on bool) { haveVPCLMUL = on }

// Command vodsim runs the VOD + COS emulator standalone, configured by the
// environment (prefix VODPIPE_VODSIM_). Clients reach COS by dialing its
// address with production bucket URLs (see pkg/vod.DialOverride).
package main

import "github.com/vodpipe/vodpipe/pkg/vodsim"

func main() { vodsim.Main() }

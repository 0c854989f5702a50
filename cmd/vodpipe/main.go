// Command vodpipe is the operator's command line: run the pipeline in one
// process (demo, up), submit and steer jobs, sign and decode signatures, and
// run any one service. Its code is internal/cli.
package main

import "github.com/vodpipe/vodpipe/internal/cli"

func main() { cli.Main() }

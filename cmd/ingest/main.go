// Command ingest runs vodpipe's job API and signature service, configured by
// the environment (prefix VODPIPE_). It is the only service given the Tencent SecretKey.
package main

import (
	"github.com/vodpipe/vodpipe/internal/ingest"
	"github.com/vodpipe/vodpipe/internal/service"
)

func main() { service.Main("ingest", ingest.New) }

// Command ingest runs vodpipe's job API and signature service, configured by
// the environment (prefix VODPIPE_). It is the only service given the Tencent SecretKey.
package main

import (
	"github.com/vodpipe/vodpipe/internal/service"
	"github.com/vodpipe/vodpipe/pkg/ingest"
)

func main() { service.Main("ingest", ingest.New) }

// Command worker runs a vodpipe upload worker, configured by the environment
// (prefix VODPIPE_). Scale it horizontally: workers share one JetStream consumer.
package main

import (
	"github.com/vodpipe/vodpipe/internal/service"
	"github.com/vodpipe/vodpipe/internal/worker"
)

func main() { service.Main("worker", worker.New) }

// Command notify runs vodpipe's event service, configured by the environment
// (prefix VODPIPE_): VOD event callbacks (or pull mode), webhook
// subscriptions and the server-sent event stream. Run several behind a load
// balancer: they share subscriptions and delivery work through JetStream.
package main

import (
	"github.com/vodpipe/vodpipe/internal/notify"
	"github.com/vodpipe/vodpipe/internal/service"
)

func main() { service.Main("notify", notify.New) }

// Package natsembed runs a NATS server with JetStream inside the process, for
// the all-in-one mode and for tests.
package natsembed

import (
	"errors"
	"fmt"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// Start starts an embedded NATS server with JetStream, its store in dir.
func Start(dir, host string, port int) (*natsserver.Server, error) {
	opts := &natsserver.Options{
		ServerName: "vodpipe-embedded", Host: host, Port: port, JetStream: true, StoreDir: dir,
		NoLog: true, NoSigs: true, MaxPayload: 8 << 20, JetStreamMaxMemory: 256 << 20, JetStreamMaxStore: 8 << 30,
	}
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsembed: NATS: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("natsembed: embedded NATS did not become ready")
	}
	return ns, nil
}

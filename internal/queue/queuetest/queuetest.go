// Package queuetest starts the real JetStream server that every NATS test in riposte shares:
// in-process, on a random local port, with its store in the test's temporary directory.
package queuetest

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/riposte-soar/riposte/internal/queue"
)

// StartJetStream starts an embedded NATS server with JetStream for the test and shuts it down
// when the test ends.
func StartJetStream(t testing.TB) *queue.Embedded {
	t.Helper()
	e, err := queue.StartEmbedded(queue.EmbeddedConfig{Listen: "127.0.0.1:0", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("start embedded jetstream: %v", err)
	}
	t.Cleanup(e.Shutdown)
	return e
}

// Connect opens a client connection to e, closed when the test ends (before e shuts down, as
// cleanups run last-registered first).
func Connect(t testing.TB, e *queue.Embedded) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(e.URL(), nats.Name(t.Name()))
	if err != nil {
		t.Fatalf("connect to embedded jetstream at %s: %v", e.URL(), err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream starts a server for the test (StartJetStream), connects to it (Connect) and returns
// the connection's JetStream context, for tests that set streams up by hand.
func JetStream(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc := Connect(t, StartJetStream(t))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream context: %v", err)
	}
	return nc, js
}

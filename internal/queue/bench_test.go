package queue_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/queue"
	"github.com/riposte-soar/riposte/internal/queue/queuetest"
)

// finishCounter is a queue.Observer that signals when n alerts are done.
type finishCounter struct {
	left atomic.Int64
	done chan struct{}
}

func (f *finishCounter) AlertReceived()      {}
func (f *finishCounter) DeadLettered(string) {}
func (f *finishCounter) AlertFinished(string, time.Duration) {
	if f.left.Add(-1) == 0 {
		close(f.done)
	}
}

// BenchmarkDeliverPublishAck measures the queue's own cost per alert: pull, decode, publish one
// outcome, wait for its PubAck, ack. The handler does nothing, so vendor time is out of the
// picture. Compare the in-flight settings as ratios of alerts/s within one run.
func BenchmarkDeliverPublishAck(b *testing.B) {
	for _, inFlight := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("in-flight=%d", inFlight), func(b *testing.B) {
			srv := queuetest.StartJetStream(b)
			nc := queuetest.Connect(b, srv)
			cfg := queue.DefaultConfig()
			cfg.MaxInFlight = inFlight
			q, err := queue.New(nc, cfg, zap.NewNop())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := q.Ensure(context.Background()); err != nil {
				b.Fatal(err)
			}
			js, err := jetstream.New(nc)
			if err != nil {
				b.Fatal(err)
			}
			body := []byte(`{"type":"phishing","confidenceIndicator":"malicious","eventId":"ev-1","entityId":"ent-1"}`)
			for i := range b.N {
				m := nats.NewMsg("soar.alerts.bench.x")
				m.Data = body
				m.Header.Set(nats.MsgIdHdr, fmt.Sprintf("bench-%d", i))
				if _, err := js.PublishMsgAsync(m); err != nil {
					b.Fatal(err)
				}
			}
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				b.Fatal("alerts not stored")
			}

			counter := &finishCounter{done: make(chan struct{})}
			counter.left.Store(int64(b.N))
			q.SetObserver(counter)
			outcome := []byte(`{"status":"unmatched"}`)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			b.ResetTimer()
			start := time.Now()
			go func() {
				_ = q.Run(ctx, func(context.Context, *queue.Alert) queue.Verdict {
					return queue.Verdict{Outcomes: []queue.Outcome{{JSON: outcome}}}
				})
			}()
			select {
			case <-counter.done:
			case <-time.After(5 * time.Minute):
				b.Fatal("alerts not all finished")
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "alerts/s")
		})
	}
}

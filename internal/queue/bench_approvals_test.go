package queue_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/queue"
	"github.com/riposte-soar/riposte/internal/queue/queuetest"
)

// BenchmarkAlertsBesideParkedApprovals is the queue's throughput while gates wait for people:
// none, and 500 swept ten times a second (fifty times the default rate, to make any cost of
// the sweep show). Compare the alerts/s of the two in one run.
func BenchmarkAlertsBesideParkedApprovals(b *testing.B) {
	for _, parked := range []int{0, 500} {
		b.Run(fmt.Sprintf("parked=%d", parked), func(b *testing.B) {
			srv := queuetest.StartJetStream(b)
			nc := queuetest.Connect(b, srv)
			cfg := queue.DefaultConfig()
			cfg.MaxInFlight = 64
			cfg.ApprovalsSweep = 100 * time.Millisecond
			q, err := queue.New(nc, cfg, zap.NewNop())
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if _, err := q.Ensure(ctx); err != nil {
				b.Fatal(err)
			}
			ap, err := q.Approvals(ctx, nil)
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			for i := range parked {
				_, err := ap.Gate(ctx, queue.ApprovalRecord{
					ApprovalRequest: queue.ApprovalRequest{ID: fmt.Sprintf("gate%04d", i), AlertID: fmt.Sprintf("a-%d", i),
						Playbook: "bench", Step: "isolate", Prompt: "Isolate?", Approvers: 1, OnTimeout: "deny",
						CreatedAt: now, ExpiresAt: now.Add(4 * time.Hour)},
					Subject: "soar.alerts.bench.x", Body: []byte(`{}`), JournalID: fmt.Sprintf("a-%d", i),
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			go func() { _ = ap.Run(ctx) }()

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

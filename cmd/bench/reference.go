package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/riposte-soar/riposte/internal/queue"
)

// The floors riposte is compared with. They read the same stream through the same durable
// consumer riposte uses, created by queue.Ensure with the worker's defaults.

// consumeBatch is how many alerts the reference consumers keep fetched ahead of their work.
const consumeBatch = 1024

// bareConsume acks n alerts as the server hands them over, doing nothing else: the most the
// server and the client library can do on this machine.
func bareConsume(ctx context.Context, nc *nats.Conn, n int) (int, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	cfg := queue.DefaultConfig()
	cons, err := js.Consumer(ctx, cfg.AlertsStream, cfg.Consumer)
	if err != nil {
		return 0, err
	}
	var acked atomic.Int64
	done := make(chan struct{})
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if m.Ack() == nil && acked.Add(1) == int64(n) {
			close(done)
		}
	}, jetstream.PullMaxMessages(consumeBatch))
	if err != nil {
		return 0, err
	}
	defer cc.Stop()
	select {
	case <-done:
		return n, nil
	case <-ctx.Done():
		return int(acked.Load()), fmt.Errorf("bare consumer: %d of %d acked: %w", acked.Load(), n, ctx.Err())
	}
}

// bOutcomeSubject is where B publishes; the outcomes stream captures it.
const bOutcomeSubject = "soar.outcomes.b"

// pipelineB is B, the pipeline riposte should come close to when it has nothing to do but
// decide that no playbook matches: pull, parse the JSON alert once, publish a ~500-byte
// outcome with a message id (so the server de-duplicates as it does for riposte), and ack the
// alert only after the outcome's PubAck. It is written as the STYLE guide says a worker should
// be: the pull callback never waits for a PubAck; it publishes asynchronously and hands the
// future to one goroutine that awaits the futures in order and acks each alert after its own.
func pipelineB(ctx context.Context, nc *nats.Conn, n int) (int, error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4*consumeBatch),
		jetstream.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		return 0, err
	}
	cfg := queue.DefaultConfig()
	cons, err := js.Consumer(ctx, cfg.AlertsStream, cfg.Consumer)
	if err != nil {
		return 0, err
	}
	type published struct {
		f jetstream.PubAckFuture
		m jetstream.Msg
	}
	pending := make(chan published, 2*consumeBatch)
	stop := make(chan struct{})
	defer close(stop)
	result := make(chan error, 1)
	var acked int
	go func() {
		for {
			var p published
			select {
			case p = <-pending:
			case <-stop:
				return
			}
			select {
			case <-p.f.Ok():
			case err := <-p.f.Err():
				result <- fmt.Errorf("B: store outcome: %w", err)
				return
			case <-stop:
				return
			}
			if err := p.m.Ack(); err != nil {
				result <- fmt.Errorf("B: ack: %w", err)
				return
			}
			if acked++; acked == n {
				result <- nil
				return
			}
		}
	}()
	var bad atomic.Value
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var alert map[string]any
		if err := json.Unmarshal(m.Data(), &alert); err != nil {
			bad.CompareAndSwap(nil, err)
			_ = m.Term()
			return
		}
		id := m.Headers().Get(nats.MsgIdHdr)
		om := nats.NewMsg(bOutcomeSubject)
		om.Data = outcomeB(id, m.Subject(), alert)
		om.Header.Set("Content-Type", "application/json")
		om.Header.Set(queue.HeaderAlertID, id)
		f, err := js.PublishMsgAsync(om, jetstream.WithMsgID(id+":b"))
		if err != nil {
			bad.CompareAndSwap(nil, err)
			_ = m.NakWithDelay(time.Second)
			return
		}
		select {
		case pending <- published{f, m}:
		case <-stop:
		}
	}, jetstream.PullMaxMessages(consumeBatch))
	if err != nil {
		return 0, err
	}
	defer cc.Stop()
	select {
	case err := <-result:
		if err == nil {
			if e, ok := bad.Load().(error); ok {
				err = fmt.Errorf("B: %w", e)
			}
		}
		return n, err
	case <-ctx.Done():
		if e, ok := bad.Load().(error); ok {
			return 0, fmt.Errorf("B stalled: %w", errors.Join(e, ctx.Err()))
		}
		return 0, fmt.Errorf("B stalled: %w", ctx.Err())
	}
}

// outcomeB is B's outcome: about 500 bytes of JSON naming the alert and echoing some of its
// fields, as riposte's outcome does.
func outcomeB(id, subject string, alert map[string]any) []byte {
	str := func(k string) string { s, _ := alert[k].(string); return s }
	now := time.Now().UTC().Format(time.RFC3339Nano)
	b := make([]byte, 0, 560)
	b = append(b, `{"alert_id":`...)
	b = strconv.AppendQuote(b, id)
	b = append(b, `,"subject":`...)
	b = strconv.AppendQuote(b, subject)
	b = append(b, `,"playbook":"b","status":"succeeded","started_at":"`...)
	b = append(b, now...)
	b = append(b, `","finished_at":"`...)
	b = append(b, now...)
	b = append(b, `","worker":"bench-b","deliveries":1,"steps":[{"id":"decide","action":"none","status":"succeeded","attempts":1,"duration_ms":0,"output":{"type":`...)
	b = strconv.AppendQuote(b, str("type"))
	b = append(b, `,"eventId":`...)
	b = strconv.AppendQuote(b, str("eventId"))
	b = append(b, `,"entityId":`...)
	b = strconv.AppendQuote(b, str("entityId"))
	b = append(b, `},"error":""}],"note":"`...)
	for len(b) < 498 {
		b = append(b, '.')
	}
	return append(b, `"}`...)
}

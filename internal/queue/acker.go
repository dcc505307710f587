package queue

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
)

// acker acknowledges deliveries and waits for the server's confirmations off the worker's slot:
// an ack is sent with a reply subject on one subscription of its own, as a DoubleAck is, but
// nothing waits for the answer. One goroutine sends again, every ackTryTimeout, the acks whose
// confirmation has not come (lost in a leader change, or on a broken connection), up to
// promptRetries tries; a repeat is harmless, the server confirms an ack of a delivery already
// acked too. A DoubleAck in the slot kept the slot idle for the round trip and cost a context,
// a timer and a request of its own per alert: off the slot, an unmatched alert costs about 6 %
// less CPU (docs/benchmarks.md, change 4). A plain Ack would save as much again, but an ack lost
// in a leader change would then go unnoticed until the ack wait brings the alert back.
type acker struct {
	nc     *nats.Conn
	prefix string // the confirmations' subjects: prefix + the ack's number
	sub    *nats.Subscription

	mu      sync.Mutex
	next    uint64
	pending map[uint64]*pendingAck
	empty   *sync.Cond // signalled when pending becomes empty

	stop chan struct{}
	done chan struct{}
}

type pendingAck struct {
	subject string // the delivery's ack subject
	sent    time.Time
	tries   int
	d       *delivery
}

// How acks are confirmed: each try waits ackTryTimeout for the server's answer, the resends are
// looked for every ackCheckEvery.
const (
	ackTryTimeout = promptTryTimeout
	ackCheckEvery = 250 * time.Millisecond
)

func newAcker(nc *nats.Conn) (*acker, error) {
	a := &acker{nc: nc, prefix: nc.NewInbox() + ".", pending: map[uint64]*pendingAck{},
		stop: make(chan struct{}), done: make(chan struct{})}
	a.empty = sync.NewCond(&a.mu)
	sub, err := nc.Subscribe(a.prefix+"*", a.confirmed)
	if err != nil {
		return nil, err
	}
	a.sub = sub
	go a.resend()
	return a, nil
}

// ack acknowledges d; the confirmation is awaited (and the ack sent again) in the background.
func (a *acker) ack(d *delivery) {
	p := &pendingAck{subject: d.msg.Reply(), sent: time.Now(), tries: 1, d: d}
	a.mu.Lock()
	a.next++
	id := a.next
	a.pending[id] = p
	a.mu.Unlock()
	a.send(id, p.subject, d)
}

func (a *acker) send(id uint64, subject string, d *delivery) {
	if err := a.nc.PublishRequest(subject, a.prefix+strconv.FormatUint(id, 10), ackBody); err != nil {
		// Sent again with the others whose confirmation did not come.
		d.log().Debug("ack alert", zap.Error(err))
	}
}

var ackBody = []byte("+ACK")

func (a *acker) confirmed(m *nats.Msg) {
	id, err := strconv.ParseUint(strings.TrimPrefix(m.Subject, a.prefix), 10, 64)
	if err != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if m.Header.Get(statusHeader) != "" {
		// Not the server's confirmation (an empty message) but the connection's answer that no
		// one took the ack (503): the consumer had no leader that moment. Sent again at the
		// next look, as DoubleAck's caller did on ErrNoResponders.
		if p, ok := a.pending[id]; ok {
			p.sent = time.Time{}
		}
		return
	}
	delete(a.pending, id)
	if len(a.pending) == 0 {
		a.empty.Broadcast()
	}
}

// statusHeader carries a status the server answers instead of a reply, such as 503 for no
// responders.
const statusHeader = "Status"

func (a *acker) resend() {
	defer close(a.done)
	t := time.NewTicker(ackCheckEvery)
	defer t.Stop()
	type again struct {
		id      uint64
		subject string
		d       *delivery
	}
	var due []again
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		due = due[:0]
		a.mu.Lock()
		for id, p := range a.pending {
			if now.Sub(p.sent) < ackTryTimeout {
				continue
			}
			if p.tries == promptRetries {
				p.d.log().Warn("ack alert; it may be delivered again, and its outcome is then dropped as a duplicate",
					zap.Int("tries", p.tries))
				delete(a.pending, id)
				continue
			}
			p.tries++
			p.sent = now
			due = append(due, again{id, p.subject, p.d})
		}
		if len(a.pending) == 0 {
			a.empty.Broadcast()
		}
		a.mu.Unlock()
		for _, d := range due {
			a.send(d.id, d.subject, d.d)
		}
	}
}

// close waits until every ack is confirmed or given up, then stops.
func (a *acker) close() {
	a.mu.Lock()
	for len(a.pending) > 0 {
		a.empty.Wait()
	}
	a.mu.Unlock()
	close(a.stop)
	<-a.done
	_ = a.sub.Unsubscribe()
}

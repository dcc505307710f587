package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/jsonval"
)

// Header names the worker reads or writes.
const (
	HeaderDLQReason     = "Riposte-Dlq-Reason" // the reason token, as in the subject: invalid, too_large, exhausted
	HeaderDLQDetail     = "Riposte-Dlq-Detail" // the same in a sentence, for people
	HeaderAlertID       = "Riposte-Alert-Id"
	HeaderSubject       = "Riposte-Subject"
	HeaderDeliveries    = "Riposte-Deliveries"
	HeaderStreamSeq     = "Riposte-Stream-Seq"
	HeaderOriginalMsgID = "Riposte-Original-Msg-Id"
	HeaderLastOutcome   = "Riposte-Last-Outcome"
	HeaderTruncated     = "Riposte-Truncated" // the payload's original size, when cut to fit
	// HeaderTruncatedHeaders names the copied headers whose values were cut to fit.
	HeaderTruncatedHeaders = "Riposte-Truncated-Headers"
	// HeaderReplayOf marks an alert republished from the dead-letter stream (worker dlq replay):
	// the dead letter's sequence there. Its outcomes get message ids of their own, so that they
	// are not dropped as duplicates of the first run's.
	HeaderReplayOf       = "Riposte-Replay-Of"
	dlqReasonInvalid     = "invalid"
	dlqReasonTooLarge    = "too_large"
	dlqReasonExhausted   = "exhausted"
	dlqReasonUnpublished = "unpublishable"
	// MaxAlertIDBytes is the longest alert id accepted: ids travel in headers and message ids.
	MaxAlertIDBytes = 256
	// maxCopiedHeader is the longest header value a dead letter keeps whole.
	maxCopiedHeader      = 4 << 10
	publishTimeout       = 10 * time.Second
	maxLastOutcomeHeader = 64 << 10
	shutdownNakDelay     = 0 // another replica should pick the alert up at once
	unmatchedOutcomeName = "unmatched"
)

// Alert is one delivery of an alert, decoded once.
type Alert struct {
	ID         string
	Subject    string
	Headers    map[string]string // first value of each header
	Body       map[string]any
	Deliveries int // 1 on the first delivery
	// JournalID names this alert in the step journal: its ID, and for an ID made from the
	// stream sequence also the time it was stored, since a recreated stream reuses sequences.
	JournalID string
	// Failures is how many earlier deliveries ended in a vendor failure: what counts against
	// max_deliver. Deliveries counts every delivery, shutdowns and crashed workers included.
	Failures int
	// Parks is how many earlier deliveries were handed back because a vendor was held back:
	// those count against nothing but the time the alert may wait (MaxHeldBack).
	Parks int
	// ReplayOf is the dead-letter sequence this alert was replayed from, "" for a first run.
	ReplayOf string
	// ResumePlaybook, for an alert republished after an approval decision, is the one
	// playbook that runs on from its gate.
	ResumePlaybook string
}

// Outcome is one finished playbook run, already encoded. Playbook "" is the unmatched outcome.
type Outcome struct {
	Playbook string
	JSON     []byte
}

// Verdict is what the handler decided about one alert.
type Verdict struct {
	Outcomes []Outcome
	// Retry says a step failed in a way that may pass later: the alert is redelivered after a
	// delay and its outcomes are not published, until deliveries run out; then the outcomes are
	// published and the alert goes to the exhausted dead-letter subject.
	Retry bool
	// RetryAfter, when longer than the worker's own delay, is how long the redelivery waits:
	// a vendor's Retry-After.
	RetryAfter time.Duration
	// Requeue gives the alert back without counting a vendor failure: the run could not finish
	// for a reason of the worker's own (a panic, a journal it could not read). Only the hard cap
	// on deliveries bounds it.
	Requeue bool
	// HeldBack, with Requeue, says the run waits for a vendor its breaker or bulkhead holds
	// back: not the worker's fault either, so only MaxHeldBack bounds it; RetryAfter says when
	// the vendor will next be tried.
	HeldBack bool
}

// Handler processes one alert. It must honour ctx: it is cancelled when shutdown's grace
// period runs out.
type Handler func(ctx context.Context, a *Alert) Verdict

// Triage gives the verdict on an alert that needs no run (no playbook's `when` holds it), or
// ok false for any other, which then takes a slot and goes to the Handler. It is called on the
// pull's own goroutine, one alert at a time, so it must not wait for anything; its verdict may
// hold only outcomes.
type Triage func(a *Alert) (v Verdict, ok bool)

// How a delivery ended, as Observer.AlertFinished reports it.
const (
	ResultAcked        = "acked"         // its outcomes are stored
	ResultRetried      = "retried"       // nak'ed: JetStream delivers it again later
	ResultDeadLettered = "dead_lettered" // copied to the dead-letter stream and terminated
)

// Observer hears what becomes of each delivery; the worker's metrics implement it. Methods are
// called from many goroutines at once.
type Observer interface {
	AlertReceived()
	// AlertFinished reports one of the Result constants and the time since AlertReceived.
	AlertFinished(result string, took time.Duration)
	// DeadLettered reports a dead letter stored, by reason (invalid, too_large, exhausted).
	DeadLettered(reason string)
}

type nopObserver struct{}

func (nopObserver) AlertReceived()                      {}
func (nopObserver) AlertFinished(string, time.Duration) {}
func (nopObserver) DeadLettered(string)                 {}

// Queue is a worker's view of JetStream.
type Queue struct {
	ready      *atomic.Bool // bound to the consumer and pulling; shared with boundTo's copy
	js         jetstream.JetStream
	journal    *Journal // set by Ensure; counts vendor failures per alert
	cfg        Config
	log        *zap.Logger
	obs        Observer
	maxPayload int    // the server's limit on one message, headers included
	acks       *acker // set by Run
	triage     Triage // nil: every alert takes a slot
}

// New wraps a NATS connection. Call Ensure before Run.
func New(nc *nats.Conn, cfg Config, log *zap.Logger) (*Queue, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// A PubAck that never comes must fail its future, or the alert would wait on it forever.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(publishTimeout))
	if err != nil {
		return nil, fmt.Errorf("open jetstream: %w", err)
	}
	return &Queue{ready: new(atomic.Bool), js: js, cfg: cfg, log: log, obs: nopObserver{}, maxPayload: int(nc.MaxPayload())}, nil
}

// SetTriage makes t answer what it can of every delivery, first, before a slot is taken for
// it; call it before Run. An alert it answers costs a third less CPU than one run in a slot
// (docs/benchmarks.md, change 12).
func (q *Queue) SetTriage(t Triage) { q.triage = t }

// SetObserver makes o hear about every delivery from now on; call it before Run. nil stops it.
func (q *Queue) SetObserver(o Observer) {
	if o == nil {
		o = nopObserver{}
	}
	q.obs = o
}

// Ready says the queue is bound to its consumer and pulling alerts, its last pull unfailed.
func (q *Queue) Ready() bool { return q.ready.Load() }

// ConsumerState reads the shared consumer's counts: alerts not delivered yet, and delivered
// but not acked (parked ones included).
func (q *Queue) ConsumerState(ctx context.Context) (pending, ackPending uint64, err error) {
	c, err := q.js.Consumer(ctx, q.cfg.AlertsStream, q.cfg.Consumer)
	if err != nil {
		return 0, 0, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	return info.NumPending, uint64(info.NumAckPending), nil
}

// Config returns the effective configuration, defaults filled in.
func (q *Queue) Config() Config { return q.cfg }

// Ensure creates the streams, the durable consumer and the journal bucket where they are
// missing. Existing ones are left exactly as the operator configured them.
func (q *Queue) Ensure(ctx context.Context) (*Journal, error) {
	c := q.cfg
	streams := []jetstream.StreamConfig{
		{Name: c.AlertsStream, Subjects: c.AlertsSubjects, MaxAge: 7 * 24 * time.Hour},
		{Name: c.OutcomesStream, Subjects: []string{c.OutcomesPrefix + ".>"}, MaxAge: 7 * 24 * time.Hour},
		{Name: c.DLQStream, Subjects: []string{c.DLQPrefix + ".>"}, MaxAge: 30 * 24 * time.Hour},
	}
	for _, sc := range streams {
		sc.Storage = jetstream.FileStorage
		sc.Replicas = c.Replicas
		sc.Duplicates = c.DuplicateWindow
		if err := q.ensureStream(ctx, sc); err != nil {
			return nil, err
		}
	}
	if err := q.ensureConsumer(ctx); err != nil {
		return nil, err
	}
	var kv jetstream.KeyValue
	err := q.untilAnswered(ctx, "open step journal bucket", func(ctx context.Context) error {
		var err error
		kv, err = q.js.KeyValue(ctx, c.JournalBucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = q.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
				Bucket: c.JournalBucket, Description: "riposte: steps that already succeeded, per alert and playbook",
				History: 1, TTL: c.JournalTTL, Storage: jetstream.FileStorage,
				MaxBytes: c.JournalMaxBytes, Replicas: c.Replicas,
			})
			if errors.Is(err, jetstream.ErrBucketExists) { // another replica won the race
				kv, err = q.js.KeyValue(ctx, c.JournalBucket)
			}
		}
		if err != nil {
			return fmt.Errorf("open step journal bucket %q: %w", c.JournalBucket, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	q.journal = &Journal{kv: kv}
	return q.journal, nil
}

func (q *Queue) ensureStream(ctx context.Context, sc jetstream.StreamConfig) error {
	return q.untilAnswered(ctx, "ensure stream", func(ctx context.Context) error {
		_, err := q.js.Stream(ctx, sc.Name)
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("look up stream %q: %w", sc.Name, err)
		}
		_, err = q.js.CreateStream(ctx, sc)
		if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("create stream %q for %s: %w", sc.Name, strings.Join(sc.Subjects, ", "), err)
		}
		q.log.Info("created stream", zap.String("stream", sc.Name), zap.Strings("subjects", sc.Subjects))
		return nil
	})
}

// Start-up on a cluster: a stream, consumer or bucket that another worker has just created has
// no leader for a moment, and answers nothing until it has one; a cluster that is starting or
// electing says it is unavailable. Those are waited out, each try cut short so that the next one
// goes as soon as the leader may be there. Creating is idempotent (a create that timed out but
// landed is found by the next look-up), so a whole look-up-or-create is tried again.
const (
	setupTryTimeout  = 2 * time.Second
	setupRetryFirst  = 100 * time.Millisecond
	setupRetryMax    = 2 * time.Second
	setupLogInterval = 5 * time.Second
)

// JetStream API error codes the jetstream package has no constant for.
const (
	jsErrClusterNotAvailable jetstream.ErrorCode = 10008 // "JetStream system temporarily unavailable"
	jsErrClusterNotLeader    jetstream.ErrorCode = 10009 // "JetStream cluster can not handle request"
)

// untilAnswered runs op until it succeeds, fails with an answer from JetStream, or ctx ends.
// Only JetStream not answering yet (jsUnanswered) is tried again; a refusal, such as subjects
// that overlap another stream's, is the operator's to fix and is returned at once. When ctx
// ends, the last error is returned, so that the log says what JetStream was not doing.
func (q *Queue) untilAnswered(ctx context.Context, what string, op func(ctx context.Context) error) error {
	b := backoff.NewExponentialBackOff(backoff.WithInitialInterval(setupRetryFirst),
		backoff.WithMaxInterval(setupRetryMax), backoff.WithMaxElapsedTime(0))
	var logged time.Time
	for try := 1; ; try++ {
		tctx, cancel := context.WithTimeout(ctx, setupTryTimeout)
		err := op(tctx)
		cancel()
		if err == nil || ctx.Err() != nil || !jsUnanswered(err) {
			return err
		}
		wait := b.NextBackOff()
		if time.Since(logged) >= setupLogInterval {
			q.log.Warn("jetstream is not answering yet; trying again", zap.String("doing", what),
				zap.Int("try", try), zap.Duration("in", wait), zap.Error(err))
			logged = time.Now()
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
	}
}

// jsUnanswered says err is JetStream not answering yet rather than refusing: a request that
// timed out (a stream or consumer without a leader), no one listening (JetStream starting), or
// the cluster saying it cannot handle the request for now.
func jsUnanswered(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) {
		return true
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode {
	case jsErrClusterNotAvailable, jsErrClusterNotLeader, jetstream.JSErrCodeJetStreamNotEnabled:
		return true
	}
	return false
}

func (q *Queue) ensureConsumer(ctx context.Context) error {
	return q.untilAnswered(ctx, "ensure consumer", q.ensureConsumerOnce)
}

func (q *Queue) ensureConsumerOnce(ctx context.Context) error {
	c := q.cfg
	info, err := q.js.Consumer(ctx, c.AlertsStream, c.Consumer)
	if err == nil {
		if mp := info.CachedInfo().Config.MaxAckPending; mp > 0 && mp < c.MaxInFlight*2 {
			q.log.Warn("existing consumer's max_ack_pending leaves little room for more replicas",
				zap.String("consumer", c.Consumer), zap.Int("max_ack_pending", mp), zap.Int("max_in_flight", c.MaxInFlight))
		}
		return nil
	}
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("look up consumer %q on stream %q: %w", c.Consumer, c.AlertsStream, err)
	}
	_, err = q.js.CreateConsumer(ctx, c.AlertsStream, jetstream.ConsumerConfig{
		Durable:     c.Consumer,
		Description: "riposte workers: every replica pulls from this one consumer",
		AckPolicy:   jetstream.AckExplicitPolicy,
		AckWait:     c.AckWait,
		// The worker counts deliveries itself so that the last one is dead-lettered with its
		// outcome instead of silently dropped by the server.
		MaxDeliver:    -1,
		MaxAckPending: c.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil && !errors.Is(err, jetstream.ErrConsumerExists) {
		return fmt.Errorf("create consumer %q on stream %q: %w", c.Consumer, c.AlertsStream, err)
	}
	q.log.Info("created consumer", zap.String("stream", c.AlertsStream), zap.String("consumer", c.Consumer))
	return nil
}

// Run pulls alerts and hands each to h, at most MaxInFlight at once, until ctx ends. Then it
// stops pulling, lets in-flight alerts finish within the grace period, cancels the rest (they
// are nak'ed for another replica) and returns.
func (q *Queue) Run(ctx context.Context, h Handler) error {
	var cons jetstream.Consumer
	err := q.untilAnswered(ctx, "bind to consumer", func(ctx context.Context) (err error) {
		cons, err = q.js.Consumer(ctx, q.cfg.AlertsStream, q.cfg.Consumer)
		return err
	})
	if err != nil && ctx.Err() != nil {
		return nil // told to stop before it started: nothing was in flight
	}
	if err != nil {
		return fmt.Errorf("bind to consumer %q on stream %q: %w", q.cfg.Consumer, q.cfg.AlertsStream, err)
	}
	q = q.boundTo(cons.CachedInfo().Config)
	if q.acks, err = newAcker(q.js.Conn()); err != nil {
		return fmt.Errorf("subscribe to ack confirmations: %w", err)
	}
	q.ready.Store(true)
	defer q.ready.Store(false)
	// Alerts in flight keep running after ctx ends, until the grace period is over.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()

	// Each delivery is decoded on the pull's goroutine, and Triage answers there the alerts that
	// need no run: their outcomes are published without waiting, and one goroutine (ackStored)
	// awaits their PubAcks in order and acks each alert after its own, as a minimal pipeline
	// does. For those, a slot, two hand-offs and a wait per alert cost about as much CPU as the
	// alert's 50 conditions, and each worker's publish went out in a write of its own
	// (docs/benchmarks.md, change 12).
	//
	// The others run in MaxInFlight slots, one alert each at a time, on twice as many workers: a
	// worker gives its slot up once the handler has decided (slot.release), then stores the
	// outcomes, awaits their PubAcks and acks without holding one, so the round trips to
	// JetStream after a run do not keep the next alert from starting. Such a delivery is taken
	// from the pull only when a slot and a worker are free for it: until then deliveries wait in
	// the pull's buffer, which PullMaxMessages bounds to pullAhead × MaxInFlight: an alert
	// waiting there burns its ack wait while no one works on it, but a buffer of one slot's
	// worth ran dry while the next pull was on its way. With 64 slots and every alert run in one,
	// the two together made 10 to 25 % more alerts a second (docs/benchmarks.md, change 10).
	deliveries := make(chan *delivery) // unbuffered: handed to an idle worker
	slots := make(chan struct{}, q.cfg.MaxInFlight)
	quit := make(chan struct{})
	workers := 2 * q.cfg.MaxInFlight
	beat := newBeats(workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			held := &slot{slots: slots}
			for {
				select {
				case d := <-deliveries:
					held.held = d.slotted // deliver reserved it for this delivery
					if ctx.Err() != nil && d.verdict == nil {
						// Taken as shutdown began: another replica can start on it now. A
						// triaged one is decided: its outcomes are stored, as a run's are.
						q.handBack(d)
					} else {
						beat.set(i, d.msg)
						q.handle(work, d, h, held)
						beat.set(i, nil)
					}
					held.release()
				case <-quit:
					return
				}
			}
		}()
	}
	// Beating until every delivery has ended, the grace period's included.
	stopBeats, beatsDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(beatsDone); beat.run(stopBeats, q.cfg.AckWait/3, q.log) }()

	stored := make(chan *delivery, pullAhead*q.cfg.MaxInFlight)
	storedDone := make(chan struct{})
	go func() { defer close(storedDone); q.ackStored(stored, deliveries) }()

	// The lock keeps the deliveries of a pull being replaced (rebind) and of its successor one
	// at a time.
	var deliverMu sync.Mutex
	pulled := false // set once the pull is over: a delivery that still comes is handed back
	deliver := func(msg jetstream.Msg) {
		deliverMu.Lock()
		defer deliverMu.Unlock()
		if ctx.Err() != nil || pulled {
			_ = msg.NakWithDelay(shutdownNakDelay) // pulled as shutdown began
			return
		}
		if !q.ready.Load() {
			q.ready.Store(true) // an alert came: the pull works
		}
		d := q.receive(msg)
		if d == nil || q.triaged(d, stored) {
			return
		}
		if d.verdict == nil {
			// deliver returns, and the jetstream package counts the delivery as taken (and
			// pulls more when fewer than MaxInFlight are left), once a slot is free for it. A
			// triaged one whose publish failed needs none: only its outcomes are left to store.
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				q.handBack(d)
				return
			}
			d.slotted = true
			select {
			case deliveries <- d: // a worker is free: the reserved slot is its
			case <-ctx.Done():
				q.handBack(d) // not held up by the workers' runs until the grace period
			}
			return
		}
		// Workers stop only once the pull is over and this lock has been taken after it, and
		// one is free within publishTimeout: no worker runs a handler without a slot.
		deliveries <- d
	}
	q.pull(ctx, cons, deliver)
	// A delivery still under way (the drain gave up waiting for it) ends before stored closes.
	deliverMu.Lock()
	pulled = true
	deliverMu.Unlock()

	done := make(chan struct{})
	go func() {
		// The triaged alerts are acked, or handed to workers to store again; then the workers
		// finish what they hold, and stop.
		close(stored)
		<-storedDone
		close(quit)
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(q.cfg.GracePeriod):
		q.log.Warn("grace period over, cancelling alerts in flight", zap.Duration("grace", q.cfg.GracePeriod))
		cancelWork()
		<-done
	}
	close(stopBeats)
	<-beatsDone
	q.acks.close() // every ack confirmed, or given up after its tries
	return nil
}

// pull keeps one persistent pull on cons handing alerts to deliver until ctx ends, pulling
// again when the pull is lost (no heartbeat) or ends (the consumer was deleted), and keeps
// q.ready. Then it drains the pull: what it had buffered comes through deliver, which naks it.
func (q *Queue) pull(ctx context.Context, cons jetstream.Consumer, deliver jetstream.MessageHandler) {
	type pullError struct {
		cc  jetstream.ConsumeContext
		err error
	}
	pullErrs := make(chan pullError, 16)
	consume := func(cons jetstream.Consumer) (jetstream.ConsumeContext, error) {
		return cons.Consume(deliver,
			jetstream.PullMaxMessages(pullAhead*q.cfg.MaxInFlight),
			jetstream.PullExpiry(pullExpiry),
			jetstream.PullHeartbeat(pullHeartbeat),
			jetstream.ConsumeErrHandler(func(cc jetstream.ConsumeContext, err error) {
				select {
				case pullErrs <- pullError{cc, err}:
				default: // the loop is behind on errors; it will look at the consumer anyway
				}
			}))
	}

	cc, err := consume(cons)
	if err != nil {
		q.ready.Store(false)
		q.log.Warn("pull alerts", zap.Error(err))
	}
	// After a failed pull, the worker is ready again once a whole heartbeat check has passed
	// without another failure (or an alert came).
	recovered := time.NewTimer(time.Hour)
	recovered.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	if cc == nil {
		retry.Reset(time.Second)
	}
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-recovered.C:
			q.ready.Store(cc != nil)
		case <-retry.C:
			// The pull ended (the consumer was deleted, or the connection closed): make sure the
			// consumer is there, and pull again.
			cons = q.rebind(ctx, cons)
			if ctx.Err() != nil {
				break loop
			}
			if cc, err = consume(cons); err != nil {
				q.log.Warn("pull alerts", zap.Error(err))
				retry.Reset(time.Second) // a broken connection should not spin
				continue
			}
			recovered.Reset(pullRecovered)
		case pe := <-pullErrs:
			if pe.cc != cc || cc == nil {
				continue // from a pull already replaced
			}
			q.ready.Store(false)
			recovered.Stop()
			if errors.Is(pe.err, jetstream.ErrNoHeartbeat) {
				// The server holding the pull is gone (the consumer's leader died), and the pull
				// with it; the jetstream package pulls again at once, which finds the new leader,
				// or no one yet. A deleted consumer sends no heartbeats either.
				q.log.Warn("pull alerts: no heartbeat from the consumer; pulling again", zap.Duration("heartbeat", pullHeartbeat))
				if fresh := q.rebind(ctx, cons); fresh != cons {
					cc.Stop()
					cons, cc = fresh, nil
					retry.Reset(0)
					continue
				}
				recovered.Reset(pullRecovered)
				continue
			}
			q.log.Warn("pull alerts", zap.Error(pe.err))
			if errors.Is(pe.err, jetstream.ErrConsumerDeleted) || errors.Is(pe.err, jetstream.ErrBadRequest) ||
				errors.Is(pe.err, jetstream.ErrConnectionClosed) {
				// The jetstream package stops the pull on these.
				cc.Stop()
				cc = nil
				retry.Reset(0)
				continue
			}
			recovered.Reset(pullRecovered)
		}
	}
	recovered.Stop()
	retry.Stop()
	q.ready.Store(false)
	if cc != nil {
		// What the pull had buffered comes through deliver, which naks it for another replica.
		cc.Drain()
		select {
		case <-cc.Closed():
		case <-time.After(drainWait):
		}
	}

}

// The pull for alerts is one persistent pull (Consume) of at most MaxInFlight messages,
// renewed by the jetstream package as alerts are handed to workers. It asks the server for a
// heartbeat every pullHeartbeat while it has none to give: a pull lost with the consumer's
// leader is noticed after two missed heartbeats. Heartbeats come only while the pull is idle,
// so they cost nothing per alert. Not shorter than a second: on a busy machine the server's
// heartbeats run late (at 0.5 s, the hanging-vendor test gave up a live pull every 20 s or so).
// An idle worker renews its pull every pullExpiry.
const (
	pullExpiry    = 30 * time.Second
	pullHeartbeat = time.Second
	// pullRecovered is how long a pull must go without failing for the worker to be ready again.
	pullRecovered = 3 * pullHeartbeat
	// drainWait bounds how long shutdown waits for the pull's buffer to be handed back.
	drainWait = 5 * time.Second
)

// beats sends the in-progress heartbeats of every alert in flight from one ticker, so that a
// run longer than the ack wait is not redelivered under it: each worker's slot holds the
// delivery it runs, and every tick (a third of the ack wait) extends each one.
type beats struct {
	mu   sync.Mutex
	msgs []jetstream.Msg // by worker; nil while the worker is idle
}

func newBeats(workers int) *beats { return &beats{msgs: make([]jetstream.Msg, workers)} }

func (b *beats) set(worker int, msg jetstream.Msg) {
	b.mu.Lock()
	b.msgs[worker] = msg
	b.mu.Unlock()
}

func (b *beats) run(quit <-chan struct{}, every time.Duration, log *zap.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	var now []jetstream.Msg
	for {
		select {
		case <-quit:
			return
		case <-t.C:
		}
		b.mu.Lock()
		now = append(now[:0], b.msgs...)
		b.mu.Unlock()
		for _, msg := range now {
			if msg == nil {
				continue
			}
			// Acked since it was read: nothing left to extend.
			if err := msg.InProgress(); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
				log.Warn("extend ack deadline", zap.Error(err))
			}
		}
	}
}

// rebind checks that the consumer still exists and, if an operator deleted it or its stream,
// creates what is missing again and binds to the new one, so that a worker never goes on polling
// a consumer that is gone.
func (q *Queue) rebind(ctx context.Context, cons jetstream.Consumer) jetstream.Consumer {
	// Bounded: a consumer without a leader answers nothing, and the pull loop must go on.
	ictx, cancel := context.WithTimeout(ctx, setupTryTimeout)
	_, err := cons.Info(ictx)
	cancel()
	if err == nil || !(errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound)) {
		return cons
	}
	q.log.Warn("the alerts consumer is gone; creating it again", zap.String("stream", q.cfg.AlertsStream),
		zap.String("consumer", q.cfg.Consumer), zap.Error(err))
	fresh, err := func() (jetstream.Consumer, error) {
		// On a copy: Ensure sets the journal, which alerts still in flight read. The bucket is
		// known by its name, so the journal they have goes on working.
		ensure := *q
		if _, err := ensure.Ensure(ctx); err != nil {
			return nil, err
		}
		return q.js.Consumer(ctx, q.cfg.AlertsStream, q.cfg.Consumer)
	}()
	if err != nil {
		q.log.Error("re-create the alerts consumer; trying again", zap.Error(err))
		select { // do not spin while the server refuses
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
		return cons
	}
	return fresh
}

// boundTo adapts the worker's limits to the consumer it actually binds to, which may be one the
// operator created: heartbeats must beat that consumer's ack wait, and the worker must
// dead-letter an alert before that consumer's max_deliver makes the server give up on it.
func (q *Queue) boundTo(cc jetstream.ConsumerConfig) *Queue {
	b := *q
	if cc.AckWait > 0 {
		b.cfg.AckWait = cc.AckWait
	}
	for _, d := range cc.BackOff {
		// A consumer BackOff list replaces the ack wait of redeliveries with its entries.
		if d > 0 && d < b.cfg.AckWait {
			b.cfg.AckWait = d
		}
	}
	if len(cc.BackOff) > 0 {
		q.log.Warn("the consumer has a BackOff list: it also shortens the ack wait; riposte times redeliveries itself",
			zap.String("consumer", cc.Durable), zap.Durations("backoff", cc.BackOff))
	}
	if cc.MaxDeliver > 0 && cc.MaxDeliver < b.cfg.MaxDeliveries {
		// The server counts every delivery: the worker's own cap must come first, so the last
		// one is dead-lettered with its outcome instead of silently dropped.
		q.log.Warn("the consumer's max_deliver is lower than the worker's cap on deliveries; dead-lettering after it",
			zap.String("consumer", cc.Durable), zap.Int("max_deliver", cc.MaxDeliver), zap.Int("worker_max_deliveries", q.cfg.MaxDeliveries))
		b.cfg.MaxDeliveries = cc.MaxDeliver
		b.cfg.MaxDeliver = min(b.cfg.MaxDeliver, cc.MaxDeliver)
	}
	return &b
}

// pullAhead × MaxInFlight is the most a replica's pull buffers, and the most triaged alerts
// awaiting their PubAcks. Twice MaxInFlight kept slots busy; four times keeps the pull's goroutine
// from waiting, on the pull or on the PubAcks, when it triages alerts faster than they come
// (docs/benchmarks.md, change 15).
const pullAhead = 4

// slot is a worker's hold on one of Run's MaxInFlight slots, given up at most once per delivery.
type slot struct {
	held  bool
	slots chan struct{}
}

func (s *slot) release() {
	if s != nil && s.held {
		s.held = false
		<-s.slots
	}
}

// delivery is one message of the pull, decoded on the pull's goroutine.
type delivery struct {
	msg            jetstream.Msg
	meta           *jetstream.MsgMetadata
	alert          *Alert
	reason, detail string // why it cannot be processed, if it cannot: it is dead-lettered
	base           *zap.Logger
	logger         atomic.Pointer[zap.Logger] // made at the first line logged: most log none
	received       time.Time
	slotted        bool     // deliver reserved a slot for it
	verdict        *Verdict // Triage's: only its outcomes are left to store
	published      time.Time
	futures        []jetstream.PubAckFuture // of the triaged outcomes, published at published
}

// receive decodes msg. A delivery without JetStream metadata is terminated: nil.
func (q *Queue) receive(msg jetstream.Msg) *delivery {
	meta, err := msg.Metadata()
	if err != nil {
		q.log.Error("alert without jetstream metadata, terminating", zap.String("subject", msg.Subject()), zap.Error(err))
		_ = msg.TermWithReason("no jetstream metadata")
		return nil
	}
	// Every delivery from here on ends with exactly one ack, nak or term, and says which.
	d := &delivery{msg: msg, meta: meta, base: q.log, received: time.Now()}
	q.obs.AlertReceived()
	d.alert, d.reason, d.detail = q.decode(msg, meta)
	return d
}

// log is the delivery's logger, naming its alert. The acker may log for it while its last
// owner does.
func (d *delivery) log() *zap.Logger {
	if l := d.logger.Load(); l != nil {
		return l
	}
	d.logger.CompareAndSwap(nil, d.base.WithLazy(zap.String("alert_id", d.alert.ID), zap.String("subject", d.alert.Subject),
		zap.Int("delivery", d.alert.Deliveries)))
	return d.logger.Load()
}

// triaged answers d with Triage when it can, on the pull's goroutine: it publishes the
// outcomes without waiting for their PubAcks and hands d to ackStored. A redelivery is not
// triaged: its counts are read from the journal first.
func (q *Queue) triaged(d *delivery, stored chan<- *delivery) bool {
	if q.triage == nil || d.reason != "" || d.alert.Deliveries > 1 {
		return false
	}
	v, ok := q.safeTriage(d)
	if !ok || v.Retry || v.Requeue {
		return false
	}
	d.verdict = &v
	d.published = time.Now()
	futures, err := q.publishAsync(d.alert, v.Outcomes)
	if err != nil {
		// A worker publishes them again, as it would its own run's.
		d.log().Warn("publish outcomes; trying again", zap.Error(err))
		return false
	}
	d.futures = futures
	stored <- d
	return true
}

// safeTriage is Triage, a panic in it leaving the alert to the Handler: the pull's goroutine
// must not die with it.
func (q *Queue) safeTriage(d *delivery) (v Verdict, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			d.log().Error("alert triage panicked; running it in a slot", zap.Any("panic", r), zap.Stack("stack"))
			v, ok = Verdict{}, false
		}
	}()
	return q.triage(d.alert)
}

// ackStored acks each triaged alert, in order, once its outcomes' PubAcks have come. When they
// do not come within promptTryTimeout of the publish, the alert goes to a worker, which stores
// them again (the message ids make a repeat harmless) and settles the alert as its own, beating
// its ack wait meanwhile; so they are given up sooner when a third of the ack wait is shorter.
func (q *Queue) ackStored(stored <-chan *delivery, workers chan<- *delivery) {
	within := min(promptTryTimeout, q.cfg.AckWait/3)
	for d := range stored {
		if err := awaitAcks(context.Background(), d.futures, time.Until(d.published.Add(within)), d.log); err != nil {
			d.log().Warn("publish outcomes; trying again", zap.Int("try", 1), zap.Error(err))
			workers <- d
			continue
		}
		q.acks.ack(d)
		q.obs.AlertFinished(ResultAcked, time.Since(d.received))
	}
}

// handBack naks d for another replica to take at once: shutdown began before it started.
func (q *Queue) handBack(d *delivery) {
	_ = d.msg.NakWithDelay(shutdownNakDelay)
	q.obs.AlertFinished(ResultRetried, time.Since(d.received))
}

func (q *Queue) handle(ctx context.Context, d *delivery, h Handler, s *slot) {
	q.obs.AlertFinished(q.process(ctx, d, h, s), time.Since(d.received))
}

// process runs one delivery to its end and returns how it ended (a Result constant). It gives
// its slot up once the handler has decided.
func (q *Queue) process(ctx context.Context, d *delivery, h Handler, s *slot) string {
	// Once the handler has decided, its verdict is carried out even if shutdown's grace period
	// ends meanwhile: an outcome stored but not acked would make the redelivery's outcome a
	// duplicate. awaitAcks bounds the wait.
	settle := context.WithoutCancel(ctx)
	msg, alert, log := d.msg, d.alert, d.log()
	if d.reason != "" {
		log.Warn("alert dead-lettered", zap.String("reason", d.reason), zap.String("detail", d.detail))
		return q.deadLetter(settle, msg, alert, d.reason, d.detail, nil, log)
	}
	if d.verdict != nil {
		// Triaged, without a slot: its outcomes were not stored; they are published again.
		return q.settle(ctx, d, *d.verdict)
	}

	if alert.Deliveries > 1 {
		q.readCounts(settle, alert, log)
	}
	if alert.Deliveries-alert.Parks > q.cfg.MaxDeliveries {
		detail := fmt.Sprintf("delivered %d times without an end (crashed workers, expired ack waits, shutdowns); at most %d are tried", alert.Deliveries-1-alert.Parks, q.cfg.MaxDeliveries)
		log.Warn("alert dead-lettered", zap.String("reason", dlqReasonExhausted), zap.String("detail", detail))
		return q.deadLetter(settle, msg, alert, dlqReasonExhausted, detail, nil, log)
	}

	verdict := q.safeHandle(ctx, h, alert, log)
	s.release()
	return q.settle(ctx, d, verdict)
}

// settle carries out the handler's verdict on d: the alert is acked once its outcomes are
// stored, or handed back to be delivered again, or dead-lettered.
func (q *Queue) settle(ctx context.Context, d *delivery, verdict Verdict) string {
	settle := context.WithoutCancel(ctx)
	msg, meta, alert, log := d.msg, d.meta, d.alert, d.log()
	if (verdict.Retry || verdict.Requeue) && ctx.Err() != nil {
		// Shutdown, not the vendor, cut this run short: give it to another replica now rather
		// than after a retry delay. Steps that finished are in the journal and will not repeat.
		_ = msg.NakWithDelay(shutdownNakDelay)
		return ResultRetried
	}
	if verdict.Requeue && verdict.HeldBack {
		if waited := time.Since(meta.Timestamp); waited > q.cfg.MaxHeldBack {
			detail := fmt.Sprintf("waited %s for a vendor that was held back (circuit open or struggling); at most %s", waited.Round(time.Second), q.cfg.MaxHeldBack)
			log.Warn("alert dead-lettered", zap.String("reason", dlqReasonExhausted), zap.String("detail", detail))
			return q.deadLetter(settle, msg, alert, dlqReasonExhausted, detail, verdict.Outcomes, log)
		}
		q.count(settle, alert, func(c *DeliveryCounts) { c.Parks++ }, log)
		// Back when the vendor will next be tried; a vendor that gave no time is tried with the
		// usual backoff.
		delay := verdict.RetryAfter
		if delay <= 0 {
			delay = q.cfg.retryDelay(uint64(alert.Parks))
		}
		delay = min(delay, q.cfg.MaxRetryAfter)
		log.Info("alert waits for its vendor", zap.Duration("delay", delay), zap.Int("parks", alert.Parks))
		_ = msg.NakWithDelay(delay)
		return ResultRetried
	}
	if verdict.Requeue {
		if alert.Deliveries-alert.Parks >= q.cfg.MaxDeliveries {
			detail := fmt.Sprintf("delivered %d times without an end (the worker could not finish the run); at most %d are tried", alert.Deliveries-alert.Parks, q.cfg.MaxDeliveries)
			log.Warn("alert dead-lettered", zap.String("reason", dlqReasonExhausted))
			return q.deadLetter(settle, msg, alert, dlqReasonExhausted, detail, verdict.Outcomes, log)
		}
		delay := q.cfg.retryDelay(uint64(alert.Deliveries - alert.Parks - alert.Failures))
		log.Info("alert handed back", zap.Duration("delay", delay))
		_ = msg.NakWithDelay(delay)
		return ResultRetried
	}
	if verdict.Retry {
		q.count(settle, alert, func(c *DeliveryCounts) { c.Failures++ }, log)
		if alert.Failures < q.cfg.MaxDeliver && alert.Deliveries-alert.Parks < q.cfg.MaxDeliveries {
			delay := max(q.cfg.retryDelay(uint64(alert.Failures)), min(verdict.RetryAfter, q.cfg.MaxRetryAfter))
			log.Info("alert will be retried", zap.Duration("delay", delay), zap.Int("vendor_failures", alert.Failures))
			if err := msg.NakWithDelay(delay); err != nil {
				log.Warn("nak alert", zap.Error(err))
			}
			return ResultRetried
		}
	}
	if err := q.publishOutcomesPromptly(settle, d, verdict.Outcomes); err != nil {
		if alert.Deliveries >= q.cfg.MaxDeliver {
			// Retrying has not helped (no stream captures the outcome subject, or the server
			// refuses the message): keep the alert where people look, rather than offer it for ever.
			detail := fmt.Sprintf("its outcomes could not be stored after %d deliveries: %v", alert.Deliveries, err)
			log.Error("alert dead-lettered", zap.String("reason", dlqReasonUnpublished), zap.Error(err))
			return q.deadLetter(settle, msg, alert, dlqReasonUnpublished, detail, verdict.Outcomes, log)
		}
		log.Error("publish outcomes; alert will be redelivered", zap.Error(err))
		_ = msg.NakWithDelay(q.cfg.retryDelay(uint64(alert.Deliveries)))
		return ResultRetried
	}
	if verdict.Retry {
		detail := fmt.Sprintf("a step kept failing: %d deliveries ended in a vendor failure (%d deliveries in all)", alert.Failures, alert.Deliveries)
		log.Warn("alert dead-lettered", zap.String("reason", dlqReasonExhausted))
		return q.deadLetter(settle, msg, alert, dlqReasonExhausted, detail, verdict.Outcomes, log)
	}
	q.acks.ack(d)
	q.clearCounts(settle, alert, log)
	return ResultAcked
}

// Retrying promptly: on a cluster, a publish or an ack lost while the stream elects a leader
// succeeds a moment later; waiting for the redelivery delay or the ack wait would hold the
// alert's outcome back for tens of seconds. A try waits at most promptTryTimeout for its
// confirmation: a healthy server answers in milliseconds, and one sent while the stream had no
// leader is never answered, so it is sent again rather than waited for.
const (
	promptRetries    = 5
	promptRetryFirst = 100 * time.Millisecond
	promptRetryMax   = time.Second
	promptTryTimeout = 2 * time.Second
)

// publishOutcomesPromptly is publishOutcomes, tried again at once a few times when it fails,
// each try waiting promptTryTimeout at most, all of them within publishTimeout: the message ids
// make a repeat harmless.
func (q *Queue) publishOutcomesPromptly(ctx context.Context, d *delivery, outs []Outcome) error {
	a, log := d.alert, d.log()
	wait := promptRetryFirst
	deadline := time.Now().Add(publishTimeout)
	try := 1
	if d.futures != nil {
		// Triaged: the first try was made on the pull's goroutine, and ackStored gave up on it.
		deadline, try = d.published.Add(publishTimeout), 2
	}
	for ; ; try++ {
		err := q.publishOutcomes(ctx, a, outs, min(promptTryTimeout, time.Until(deadline)), d.log)
		if err == nil || try == promptRetries || ctx.Err() != nil || time.Until(deadline) <= wait {
			return err
		}
		log.Warn("publish outcomes; trying again", zap.Int("try", try), zap.Duration("in", wait), zap.Error(err))
		time.Sleep(wait)
		wait = min(wait*2, promptRetryMax)
	}
}

// readCounts reads what a's earlier deliveries came to. Unreadable, every earlier delivery is
// taken to have failed at the vendor: the old, stricter count.
func (q *Queue) readCounts(ctx context.Context, a *Alert, log *zap.Logger) {
	if q.journal == nil {
		a.Failures = a.Deliveries - 1
		return
	}
	c, err := q.journal.Counts(ctx, a.scopedID())
	if err != nil {
		log.Warn("read the alert's delivery counts; counting every earlier delivery as a vendor failure", zap.Error(err))
		a.Failures = a.Deliveries - 1
		return
	}
	a.Failures, a.Parks = c.Failures, c.Parks
}

// count records how this delivery ended in a's counts.
func (q *Queue) count(ctx context.Context, a *Alert, change func(*DeliveryCounts), log *zap.Logger) {
	local := DeliveryCounts{Failures: a.Failures, Parks: a.Parks}
	change(&local)
	if q.journal != nil {
		c, err := q.journal.Count(ctx, a.scopedID(), change)
		if err == nil {
			a.Failures, a.Parks = c.Failures, c.Parks
			return
		}
		log.Warn("count the alert's delivery; counting it here only", zap.Error(err))
	}
	a.Failures, a.Parks = local.Failures, local.Parks
}

func (q *Queue) clearCounts(ctx context.Context, a *Alert, log *zap.Logger) {
	if q.journal == nil || a.Failures == 0 && a.Parks == 0 {
		return
	}
	if err := q.journal.ClearCounts(ctx, a.scopedID()); err != nil {
		log.Warn("forget the alert's delivery counts", zap.Error(err))
	}
}

// decode turns a delivery into an Alert, or names why it cannot be processed.
func (q *Queue) decode(msg jetstream.Msg, meta *jetstream.MsgMetadata) (a *Alert, reason, detail string) {
	a = &Alert{Subject: msg.Subject(), Deliveries: int(meta.NumDelivered), Headers: map[string]string{}}
	for k, v := range msg.Headers() {
		if len(v) > 0 {
			a.Headers[k] = v[0]
		}
	}
	// The id comes first, so that even a dead letter can be traced back to its producer.
	a.ID = a.Headers[nats.MsgIdHdr]
	a.ReplayOf = a.Headers[HeaderReplayOf]
	if a.ID == "" && a.ReplayOf != "" {
		// A replay the alerts stream would have dropped as a duplicate of its first publish
		// comes without its Nats-Msg-Id: it carries its id here instead.
		a.ID = a.Headers[HeaderAlertID]
	}
	resumedJournal := ""
	if a.Headers[HeaderResume] != "" && a.Headers[HeaderAlertID] != "" {
		// Resumed after an approval decision: the first run's id and journal.
		a.ID, a.ResumePlaybook = a.Headers[HeaderAlertID], a.Headers[HeaderResumePlaybook]
		resumedJournal = a.Headers[HeaderJournalID]
	}
	data := msg.Data()
	if len(data) > q.cfg.MaxAlertBytes {
		if a.ID == "" {
			a.ID, a.JournalID = positionIDs(meta)
		}
		return a, dlqReasonTooLarge, fmt.Sprintf("alert is %d bytes, more than the %d allowed", len(data), q.cfg.MaxAlertBytes)
	}
	body, err := jsonval.Decode(data)
	obj, isObject := body.(map[string]any)
	a.JournalID = a.ID
	if resumedJournal != "" {
		a.JournalID = resumedJournal
	}
	if a.ID == "" {
		if id, ok := obj["id"].(string); ok && id != "" {
			a.ID, a.JournalID = id, id
		} else {
			a.ID, a.JournalID = positionIDs(meta)
		}
	}
	if len(a.ID) > MaxAlertIDBytes {
		size := len(a.ID)
		// Not an id to carry in headers: the dead letter is known by its place in the stream.
		a.ID, a.JournalID = positionIDs(meta)
		return a, dlqReasonInvalid, fmt.Sprintf("alert id is %d bytes, more than the %d allowed", size, MaxAlertIDBytes)
	}
	switch {
	case err != nil:
		return a, dlqReasonInvalid, "alert is not valid JSON: " + err.Error()
	case !isObject:
		return a, dlqReasonInvalid, fmt.Sprintf("alert must be a JSON object, got %s", jsonKind(body))
	}
	a.Body = obj
	return a, "", ""
}

// positionIDs name an alert that has no id of its own by its place in the stream; the scoped
// form adds when it was stored, since a re-created stream reuses sequences.
func positionIDs(meta *jetstream.MsgMetadata) (id, scoped string) {
	id = fmt.Sprintf("%s:%d", meta.Stream, meta.Sequence.Stream)
	return id, id + "@" + strconv.FormatInt(meta.Timestamp.UnixNano(), 10)
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T", v)
}

// safeHandle turns a panicking handler into a retry, so one poisonous alert ends up in the
// dead-letter stream instead of taking the worker down.
func (q *Queue) safeHandle(ctx context.Context, h Handler, a *Alert, log *zap.Logger) (v Verdict) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("alert handler panicked", zap.Any("panic", r), zap.Stack("stack"))
			v = Verdict{Requeue: true}
		}
	}()
	return h(ctx, a)
}

// publishOutcomes publishes every outcome and waits for all their PubAcks: an alert is acked
// only once JetStream holds its outcomes. The message id is <alert id>:<playbook>, with the
// journal's scoped id for an alert known only by its stream position, so that an alert stored
// at the same sequence of a re-created stream is not taken for a duplicate of the old one.
func (q *Queue) publishOutcomes(ctx context.Context, a *Alert, outs []Outcome, within time.Duration, log func() *zap.Logger) error {
	deadline := time.Now().Add(within)
	futures, err := q.publishAsync(a, outs)
	if err != nil {
		return err
	}
	return awaitAcks(ctx, futures, time.Until(deadline), log)
}

// publishAsync publishes outs, under the message ids publishOutcomes describes, and gives the
// futures of their PubAcks.
func (q *Queue) publishAsync(a *Alert, outs []Outcome) ([]jetstream.PubAckFuture, error) {
	alertID, scoped := a.ID, a.scopedID()
	if a.ReplayOf != "" {
		scoped += ":replay-" + a.ReplayOf
	}
	futures := make([]jetstream.PubAckFuture, 0, len(outs))
	for _, o := range outs {
		name := o.Playbook
		if name == "" {
			name = unmatchedOutcomeName
		}
		// The message id set as WithMsgID would set it, without the options it allocates; the
		// header values share one array.
		values := []string{"application/json", alertID, scoped + ":" + o.Playbook}
		m := &nats.Msg{Subject: q.cfg.OutcomeSubject(name), Data: o.JSON, Header: nats.Header{
			"Content-Type": values[0:1:1], HeaderAlertID: values[1:2:2], nats.MsgIdHdr: values[2:3:3]}}
		f, err := q.js.PublishMsgAsync(m)
		if err != nil {
			return nil, fmt.Errorf("publish outcome of %q to %s: %w", name, m.Subject, err)
		}
		futures = append(futures, f)
	}
	return futures, nil
}

// scopedID is the alert's id for message ids: its own when it has one, else the journal's,
// which adds when the stream stored it.
func (a *Alert) scopedID() string {
	if a.JournalID != "" {
		return a.JournalID
	}
	return a.ID
}

// awaitAcks waits for every PubAck, all of them within the given time. A duplicate is no error
// (a redelivery republishing what an earlier delivery stored), but it is logged: one that is not
// a redelivery means two alerts share an id.
func awaitAcks(ctx context.Context, futures []jetstream.PubAckFuture, within time.Duration, log func() *zap.Logger) error {
	// A PubAck that has come is taken without a timer: most have by the time they are awaited,
	// and one whose time is up must not lose a race it has already won.
	var timeout *time.Timer
	deadline := time.Now().Add(within)
	defer func() {
		if timeout != nil {
			timeout.Stop()
		}
	}()
	for _, f := range futures {
		var ack *jetstream.PubAck
		// Ok alone first: each of Ok and Err makes its channel when first called.
		select {
		case ack = <-f.Ok():
		default:
			if timeout == nil {
				timeout = time.NewTimer(time.Until(deadline))
			}
			select {
			case ack = <-f.Ok():
			case err := <-f.Err():
				return fmt.Errorf("store %s: %w", f.Msg().Subject, err)
			case <-timeout.C:
				return fmt.Errorf("store %s: no acknowledgement from jetstream after %s", f.Msg().Subject, within)
			case <-ctx.Done():
				return fmt.Errorf("store %s: %w", f.Msg().Subject, ctx.Err())
			}
		}
		if ack != nil && ack.Duplicate {
			log().Info("message already stored under its id; this copy was dropped as a duplicate",
				zap.String("subject", f.Msg().Subject), zap.String("msg_id", f.Msg().Header.Get(nats.MsgIdHdr)),
				zap.Uint64("stored_seq", ack.Sequence))
		}
	}
	return nil
}

// deadLetter copies the alert, payload and headers untouched, to <dlq>.<reason> with the
// reason in a header, then terminates the original so it is never delivered again. It returns
// how the delivery ended: dead-lettered, or retried when the copy could not be stored.
func (q *Queue) deadLetter(ctx context.Context, msg jetstream.Msg, a *Alert, reason, detail string, last []Outcome, log *zap.Logger) string {
	m := nats.NewMsg(q.cfg.DLQSubject(reason))
	m.Data = msg.Data()
	for k, vs := range msg.Headers() {
		for _, v := range vs {
			m.Header.Add(k, v)
		}
	}
	if orig := m.Header.Get(nats.MsgIdHdr); orig != "" {
		m.Header.Del(nats.MsgIdHdr)
		m.Header.Set(HeaderOriginalMsgID, clip(orig, MaxAlertIDBytes))
	}
	for k := range m.Header {
		// A publisher's expectations (Nats-Expected-Stream, -Last-Sequence…) and directives
		// (Nats-Rollup, Nats-TTL) were for the alerts stream: copied, they would make the
		// dead-letter stream refuse the dead letter.
		if strings.HasPrefix(k, "Nats-Expected-") || k == "Nats-Rollup" || k == "Nats-TTL" {
			m.Header.Del(k)
		}
	}
	m.Header.Set(HeaderDLQReason, reason)
	m.Header.Set(HeaderDLQDetail, headerSafe(detail))
	m.Header.Set(HeaderAlertID, headerSafe(a.ID))
	m.Header.Set(HeaderSubject, a.Subject)
	m.Header.Set(HeaderDeliveries, strconv.Itoa(a.Deliveries))
	if meta, err := msg.Metadata(); err == nil {
		m.Header.Set(HeaderStreamSeq, strconv.FormatUint(meta.Sequence.Stream, 10))
	}
	if len(last) > 0 {
		all := make([]json.RawMessage, 0, len(last))
		for _, o := range last {
			all = append(all, o.JSON)
		}
		// The outcomes are also on their own subjects; in a header they must not push the dead
		// letter past the server's max payload, or it could never be stored.
		if b, err := json.Marshal(all); err == nil && len(b) <= maxLastOutcomeHeader {
			m.Header.Set(HeaderLastOutcome, headerSafe(string(b)))
		}
	}
	q.fit(m)
	id := a.scopedID()
	if a.ReplayOf != "" {
		// A replay dead-lettered again is a new dead letter, not a duplicate of the first.
		id += ":replay-" + a.ReplayOf
	}
	f, err := q.js.PublishMsgAsync(m, jetstream.WithMsgID(id+":dlq:"+reason))
	if err == nil {
		err = awaitAcks(ctx, []jetstream.PubAckFuture{f}, publishTimeout, func() *zap.Logger { return log })
	}
	if err != nil {
		if a.Deliveries >= q.cfg.MaxDeliveries {
			// The dead-letter stream cannot take it either, delivery after delivery. Terminated,
			// the alert stays in its own stream at its sequence, where an operator can find it.
			log.Error("alert can be neither processed nor dead-lettered; terminating it, it stays in the alerts stream",
				zap.String("reason", reason), zap.Int("deliveries", a.Deliveries), zap.Error(err))
			_ = msg.TermWithReason("dead-letter failed: " + reason)
			return ResultDeadLettered
		}
		// Not stored, so not terminated: JetStream will offer it again.
		log.Error("dead-letter alert; it will be redelivered", zap.String("reason", reason), zap.Error(err))
		_ = msg.NakWithDelay(q.cfg.retryDelay(uint64(a.Deliveries)))
		return ResultRetried
	}
	q.obs.DeadLettered(reason)
	q.clearCounts(ctx, a, log)
	if err := msg.TermWithReason(reason); err != nil {
		log.Warn("terminate dead-lettered alert", zap.Error(err))
	}
	return ResultDeadLettered
}

// fit shrinks a dead letter that the server could not store, so that it is never redelivered
// forever for want of room: the last-outcome header goes first (the outcomes are on their own
// subjects), then the payload is cut, saying so in Riposte-Truncated.
func (q *Queue) fit(m *nats.Msg) {
	size := func() int {
		n := len(m.Data) + len(m.Subject) + 64 // the header block's own framing, generously
		for k, vs := range m.Header {
			for _, v := range vs {
				n += len(k) + len(v) + 4
			}
		}
		return n
	}
	if q.maxPayload <= 0 || size() <= q.maxPayload {
		return
	}
	m.Header.Del(HeaderLastOutcome)
	for k, vs := range m.Header {
		for i, v := range vs {
			if len(v) > maxCopiedHeader && size() > q.maxPayload {
				vs[i] = clip(v, maxCopiedHeader)
				m.Header.Set(HeaderTruncatedHeaders, strings.TrimPrefix(m.Header.Get(HeaderTruncatedHeaders)+","+k, ","))
			}
		}
	}
	if over := size() - q.maxPayload; over > 0 {
		original := len(m.Data)
		m.Header.Set(HeaderTruncated, strconv.Itoa(original))
		over = size() - q.maxPayload
		m.Data = m.Data[:max(0, original-over)]
	}
}

// clip cuts s to at most n bytes, on a character boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// headerSafe keeps a value on one header line.
func headerSafe(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}

package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Approval gates park a run on JetStream: the request and everything needed to resume the
// alert are kept in a key-value bucket, the alert itself is acknowledged (it holds no worker
// slot and no pending ack), and the decision, from `worker approve`, the console or any
// bridge that publishes to soar.approvals.decisions, republishes the alert to run on from the
// gate. The steps before the gate are reused from the journal.

// Headers of an alert resumed after a decision.
const (
	HeaderResume         = "Riposte-Resume"          // the approval id the alert resumes from
	HeaderResumePlaybook = "Riposte-Resume-Playbook" // the one playbook that runs on
	HeaderJournalID      = "Riposte-Journal-Id"      // the journal id of the first run
)

// Approval decisions.
const (
	DecisionApprove = "approve"
	DecisionDeny    = "deny"
)

// ApprovalRequest is what the worker publishes to soar.approvals.<playbook> when a run reaches
// a gate, and what `worker approvals list` shows.
type ApprovalRequest struct {
	ID        string         `json:"approval_id"`
	AlertID   string         `json:"alert_id"`
	Playbook  string         `json:"playbook"`
	Step      string         `json:"step"`
	Prompt    string         `json:"prompt"`
	Inputs    map[string]any `json:"inputs"`
	Approvers int            `json:"approvers"` // how many distinct people must approve
	OnTimeout string         `json:"on_timeout"`
	CreatedAt time.Time      `json:"created_at"`
	ExpiresAt time.Time      `json:"expires_at"`
}

// Vote is one person's approval.
type Vote struct {
	By     string    `json:"by"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// ApprovalRecord is what the approvals bucket keeps of one gate.
type ApprovalRecord struct {
	ApprovalRequest
	Votes     []Vote    `json:"votes,omitempty"`
	Decision  string    `json:"decision,omitempty"` // "" while it waits
	DecidedAt time.Time `json:"decided_at,omitzero"`
	DecidedBy []string  `json:"decided_by,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	TimedOut  bool      `json:"timed_out,omitempty"`
	Resumed   bool      `json:"resumed,omitempty"` // the alert was republished after the decision

	// What resuming the alert needs.
	Subject   string            `json:"subject"`
	Headers   map[string]string `json:"headers,omitempty"`
	Body      json.RawMessage   `json:"body"`
	JournalID string            `json:"journal_id"`
}

// Decision is a message on soar.approvals.decisions.
type Decision struct {
	ApprovalID string `json:"approval_id"`
	Decision   string `json:"decision"` // approve or deny
	By         string `json:"by"`
	Reason     string `json:"reason,omitempty"`
}

// ApprovalObserver hears decisions and the waiting count; the worker's metrics implement it.
type ApprovalObserver interface {
	ApprovalDecided(result string, waited time.Duration) // approve, deny, timeout_approve, timeout_deny
	ApprovalsWaiting(n int)
}

type nopApprovalObserver struct{}

func (nopApprovalObserver) ApprovalDecided(string, time.Duration) {}
func (nopApprovalObserver) ApprovalsWaiting(int)                  {}

// Approvals keeps gates on the approvals bucket and carries decisions out.
type Approvals struct {
	js  jetstream.JetStream
	cfg Config
	kv  jetstream.KeyValue
	log *zap.Logger
	obs ApprovalObserver
	now func() time.Time
}

// Approvals opens the approvals bucket and stream (creating what is missing).
func (q *Queue) Approvals(ctx context.Context, obs ApprovalObserver) (*Approvals, error) {
	c := q.cfg
	if err := q.ensureStream(ctx, jetstream.StreamConfig{
		Name: c.ApprovalsStream, Subjects: []string{c.ApprovalsPrefix + ".>"}, Storage: jetstream.FileStorage,
		Replicas: c.Replicas, Duplicates: c.DuplicateWindow, MaxAge: 30 * 24 * time.Hour,
	}); err != nil {
		return nil, err
	}
	kv, err := q.js.KeyValue(ctx, c.ApprovalsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = q.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: c.ApprovalsBucket, Description: "riposte: approval gates, waiting and decided",
			History: 1, TTL: 30 * 24 * time.Hour, Storage: jetstream.FileStorage, Replicas: c.Replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = q.js.KeyValue(ctx, c.ApprovalsBucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open approvals bucket %q: %w", c.ApprovalsBucket, err)
	}
	if obs == nil {
		obs = nopApprovalObserver{}
	}
	return &Approvals{js: q.js, cfg: c, kv: kv, log: q.log.Named("approvals"), obs: obs, now: time.Now}, nil
}

// ErrNoApprovals: the approvals bucket does not exist yet.
var ErrNoApprovals = errors.New("no approvals bucket: no worker has run against this server yet")

// OpenApprovals opens the approvals bucket a worker created, for tools that read and decide
// gates without running one (`worker approvals`, `worker approve`).
func OpenApprovals(ctx context.Context, js jetstream.JetStream, cfg Config) (*Approvals, error) {
	cfg = cfg.withDefaults()
	kv, err := js.KeyValue(ctx, cfg.ApprovalsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("%w (bucket %q)", ErrNoApprovals, cfg.ApprovalsBucket)
	}
	if err != nil {
		return nil, fmt.Errorf("open approvals bucket %q: %w", cfg.ApprovalsBucket, err)
	}
	return &Approvals{js: js, cfg: cfg, kv: kv, log: zap.NewNop(), obs: nopApprovalObserver{}, now: time.Now}, nil
}

// Gate returns the record of the gate rec names, creating it (and publishing its request) the
// first time a run reaches it.
func (ap *Approvals) Gate(ctx context.Context, rec ApprovalRecord) (ApprovalRecord, error) {
	if cur, _, err := ap.get(ctx, rec.ID); err == nil {
		return cur, nil
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return ApprovalRecord{}, err
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return ApprovalRecord{}, fmt.Errorf("encode approval %s: %w", rec.ID, err)
	}
	if _, err := ap.kv.Create(ctx, rec.ID, b); errors.Is(err, jetstream.ErrKeyExists) {
		cur, _, err := ap.get(ctx, rec.ID) // another delivery was quicker
		return cur, err
	} else if err != nil {
		return ApprovalRecord{}, fmt.Errorf("record approval %s: %w", rec.ID, err)
	}
	req, _ := json.Marshal(rec.ApprovalRequest)
	m := nats.NewMsg(ap.cfg.ApprovalsPrefix + "." + rec.Playbook)
	m.Data = req
	m.Header.Set("Content-Type", "application/json")
	m.Header.Set(HeaderAlertID, headerSafe(rec.AlertID))
	if _, err := ap.js.PublishMsg(ctx, m, jetstream.WithMsgID("approval:"+rec.ID)); err != nil {
		// The gate is recorded and waits; `worker approvals list` and the console show it.
		ap.log.Warn("publish the approval request", zap.String("approval_id", rec.ID), zap.Error(err))
	}
	ap.log.Info("run waits for approval", zap.String("approval_id", rec.ID), zap.String("alert_id", rec.AlertID),
		zap.String("playbook", rec.Playbook), zap.String("step", rec.Step), zap.Time("expires_at", rec.ExpiresAt))
	return rec, nil
}

func (ap *Approvals) get(ctx context.Context, id string) (ApprovalRecord, uint64, error) {
	e, err := ap.kv.Get(ctx, id)
	if err != nil {
		return ApprovalRecord{}, 0, err
	}
	var rec ApprovalRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return ApprovalRecord{}, 0, fmt.Errorf("read approval %s: %w", id, err)
	}
	return rec, e.Revision(), nil
}

// Get reads one gate; ErrUnknownApproval when there is none.
func (ap *Approvals) Get(ctx context.Context, id string) (ApprovalRecord, error) {
	if !validApprovalID(id) {
		return ApprovalRecord{}, fmt.Errorf("%w: %q", ErrUnknownApproval, id)
	}
	rec, _, err := ap.get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return ApprovalRecord{}, fmt.Errorf("%w: %q", ErrUnknownApproval, id)
	}
	return rec, err
}

// ErrUnknownApproval: no gate has that id.
var ErrUnknownApproval = errors.New("no approval has this id")

// ErrAlreadyDecided: the gate was decided before.
var ErrAlreadyDecided = errors.New("the approval was already decided")

func validApprovalID(id string) bool {
	return id != "" && !strings.ContainsAny(id, " \t\r\n*>.") && len(id) <= 128
}

// Waiting lists the gates that wait for a decision, oldest first.
func (ap *Approvals) Waiting(ctx context.Context) ([]ApprovalRecord, error) {
	return ap.list(ctx, func(rec ApprovalRecord) bool { return rec.Decision == "" })
}

func (ap *Approvals) list(ctx context.Context, keep func(ApprovalRecord) bool) ([]ApprovalRecord, error) {
	keys, err := ap.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list approvals: %w", err)
	}
	var out []ApprovalRecord
	for k := range keys.Keys() {
		rec, _, err := ap.get(ctx, k)
		if err == nil && keep(rec) {
			out = append(out, rec)
		}
	}
	slices.SortFunc(out, func(a, b ApprovalRecord) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// Decide applies one decision: a deny decides at once; an approval counts once per person and
// decides when enough people have approved. A decision on a decided gate is refused.
func (ap *Approvals) Decide(ctx context.Context, d Decision) (ApprovalRecord, error) {
	by := strings.TrimSpace(d.By)
	if by == "" || len(by) > 200 {
		return ApprovalRecord{}, errors.New("a decision must say who decides (by), in at most 200 bytes")
	}
	if d.Decision != DecisionApprove && d.Decision != DecisionDeny {
		return ApprovalRecord{}, fmt.Errorf("decision %q: use approve or deny", d.Decision)
	}
	for range 5 {
		if !validApprovalID(d.ApprovalID) {
			return ApprovalRecord{}, fmt.Errorf("%w: %q", ErrUnknownApproval, d.ApprovalID)
		}
		rec, rev, err := ap.get(ctx, d.ApprovalID)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return ApprovalRecord{}, fmt.Errorf("%w: %q", ErrUnknownApproval, d.ApprovalID)
		}
		if err != nil {
			return ApprovalRecord{}, err
		}
		if rec.Decision != "" {
			return rec, fmt.Errorf("%w: %s by %s", ErrAlreadyDecided, rec.Decision, strings.Join(rec.DecidedBy, ", "))
		}
		now := ap.now().UTC()
		switch d.Decision {
		case DecisionDeny:
			rec.Decision, rec.DecidedAt, rec.DecidedBy, rec.Reason = DecisionDeny, now, []string{by}, d.Reason
		case DecisionApprove:
			if rec.votedBy(by) {
				ap.log.Warn("approval by the same person counted once", zap.String("approval_id", rec.ID), zap.String("by", by))
				return rec, nil
			}
			rec.Votes = append(rec.Votes, Vote{By: by, At: now, Reason: d.Reason})
			if len(rec.Votes) >= max(1, rec.Approvers) {
				rec.Decision, rec.DecidedAt, rec.Reason = DecisionApprove, now, d.Reason
				for _, v := range rec.Votes {
					rec.DecidedBy = append(rec.DecidedBy, v.By)
				}
			}
		}
		ok, err := ap.put(ctx, rec, rev)
		if err != nil {
			return ApprovalRecord{}, err
		}
		if !ok {
			continue // changed under us: read it again
		}
		if rec.Decision != "" {
			ap.decided(ctx, rec, rec.Decision)
		} else {
			ap.log.Info("approval counted", zap.String("approval_id", rec.ID), zap.String("by", by),
				zap.Int("approvals", len(rec.Votes)), zap.Int("needed", rec.Approvers))
		}
		return rec, nil
	}
	return ApprovalRecord{}, errChanging
}

var errChanging = errors.New("the approval kept changing under us; try again")

func (ap *Approvals) put(ctx context.Context, rec ApprovalRecord, rev uint64) (bool, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return false, err
	}
	if _, err := ap.kv.Update(ctx, rec.ID, b, rev); errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("record the decision on %s: %w", rec.ID, err)
	}
	return true, nil
}

// decided resumes the alert and tells the metrics and the log.
func (ap *Approvals) decided(ctx context.Context, rec ApprovalRecord, result string) {
	ap.obs.ApprovalDecided(result, rec.DecidedAt.Sub(rec.CreatedAt))
	ap.log.Info("approval decided", zap.String("approval_id", rec.ID), zap.String("alert_id", rec.AlertID),
		zap.String("playbook", rec.Playbook), zap.String("step", rec.Step), zap.String("decision", rec.Decision),
		zap.Strings("by", rec.DecidedBy), zap.Bool("timed_out", rec.TimedOut))
	ap.resumeAndMark(ctx, rec)
}

// resumeAndMark resumes a decided gate's alert and records that it did; the sweep tries again
// for one that could not be resumed.
func (ap *Approvals) resumeAndMark(ctx context.Context, rec ApprovalRecord) {
	if err := ap.resume(ctx, rec); err != nil {
		ap.log.Error("resume the alert after the decision; trying again later", zap.String("approval_id", rec.ID), zap.Error(err))
		return
	}
	for range 3 {
		cur, rev, err := ap.get(ctx, rec.ID)
		if err != nil {
			return
		}
		cur.Resumed = true
		if ok, err := ap.put(ctx, cur, rev); ok || err != nil {
			return
		}
	}
}

// resume republishes the alert so that its playbook runs on from the gate.
func (ap *Approvals) resume(ctx context.Context, rec ApprovalRecord) error {
	m := nats.NewMsg(rec.Subject)
	m.Data = rec.Body
	for k, v := range rec.Headers {
		if k != nats.MsgIdHdr && !strings.HasPrefix(k, "Nats-") {
			m.Header.Set(k, v)
		}
	}
	m.Header.Set(HeaderResume, rec.ID)
	m.Header.Set(HeaderResumePlaybook, rec.Playbook)
	m.Header.Set(HeaderAlertID, headerSafe(rec.AlertID))
	m.Header.Set(HeaderJournalID, headerSafe(rec.JournalID))
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	_, err := ap.js.PublishMsg(pctx, m, jetstream.WithMsgID(rec.ID+":resume"))
	return err
}

// Run carries out decisions from the decisions subject and the timeouts of gates nobody
// decided, until ctx ends. Every replica runs it; the shared durable consumer gives each
// decision to one, and revision-checked updates let only one decide a timeout.
func (ap *Approvals) Run(ctx context.Context) error {
	c := ap.cfg
	cons, err := ap.js.CreateOrUpdateConsumer(ctx, c.ApprovalsStream, jetstream.ConsumerConfig{
		Durable: c.Consumer + "-approvals", Description: "riposte workers: approval decisions",
		FilterSubject: c.ApprovalsPrefix + ".decisions", AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 30 * time.Second, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("decisions consumer: %w", err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		var d Decision
		if err := json.Unmarshal(msg.Data(), &d); err != nil {
			ap.log.Warn("decision is not JSON; dropped", zap.Error(err))
			_ = msg.Term()
			return
		}
		if _, err := ap.Decide(ctx, d); err != nil {
			if errors.Is(err, errChanging) {
				_ = msg.NakWithDelay(time.Second)
				return
			}
			ap.log.Warn("decision refused", zap.String("approval_id", d.ApprovalID), zap.String("by", d.By), zap.Error(err))
		}
		_ = msg.Ack()
	})
	if err != nil {
		return fmt.Errorf("consume decisions: %w", err)
	}
	defer cc.Stop()
	t := time.NewTicker(c.ApprovalsSweep)
	defer t.Stop()
	for {
		ap.sweep(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// sweep decides the gates whose time ran out and resumes decided ones not yet resumed.
func (ap *Approvals) sweep(ctx context.Context) {
	open, err := ap.list(ctx, func(rec ApprovalRecord) bool { return rec.Decision == "" || !rec.Resumed })
	if err != nil {
		ap.log.Warn("sweep approvals", zap.Error(err))
		return
	}
	now := ap.now()
	waiting := 0
	for _, rec := range open {
		if rec.Decision != "" {
			if now.Sub(rec.DecidedAt) > max(10*time.Second, 2*ap.cfg.ApprovalsSweep) { // not the decider's own resume in flight
				ap.resumeAndMark(ctx, rec)
			}
			continue
		}
		if now.Before(rec.ExpiresAt) {
			waiting++
			continue
		}
		rec, rev, err := ap.get(ctx, rec.ID)
		if err != nil || rec.Decision != "" {
			continue // someone decided since the listing
		}
		rec.Decision = rec.OnTimeout
		if rec.Decision != DecisionApprove {
			rec.Decision = DecisionDeny
		}
		rec.DecidedAt, rec.DecidedBy, rec.TimedOut = now.UTC(), []string{"timeout"}, true
		rec.Reason = fmt.Sprintf("no decision within %s", rec.ExpiresAt.Sub(rec.CreatedAt).Round(time.Second))
		if ok, err := ap.put(ctx, rec, rev); err == nil && ok {
			ap.decided(ctx, rec, "timeout_"+rec.Decision)
		}
	}
	ap.obs.ApprovalsWaiting(waiting)
}

// Send checks a decision against its gate and publishes it to the decisions subject, for a
// worker to apply (what `worker approve` and the console do): an unknown or decided gate, or a
// second approval by the same person, is refused here with a clear error.
func (ap *Approvals) Send(ctx context.Context, d Decision) (ApprovalRecord, error) {
	d.By = strings.TrimSpace(d.By)
	switch {
	case d.By == "":
		return ApprovalRecord{}, errors.New("a decision must say who decides (by)")
	case d.Decision != DecisionApprove && d.Decision != DecisionDeny:
		return ApprovalRecord{}, fmt.Errorf("decision %q: use approve or deny", d.Decision)
	}
	rec, err := ap.Get(ctx, d.ApprovalID)
	if err != nil {
		return ApprovalRecord{}, err
	}
	if rec.Decision != "" {
		return rec, fmt.Errorf("%w: %s by %s at %s", ErrAlreadyDecided, rec.Decision, strings.Join(rec.DecidedBy, ", "), rec.DecidedAt.Format(time.RFC3339))
	}
	if d.Decision == DecisionApprove && rec.votedBy(d.By) {
		return rec, fmt.Errorf("%s has approved %s already; it needs %d distinct approvers", d.By, rec.ID, rec.Approvers)
	}
	b, err := json.Marshal(d)
	if err != nil {
		return ApprovalRecord{}, err
	}
	m := nats.NewMsg(ap.cfg.ApprovalsPrefix + ".decisions")
	m.Data = b
	m.Header.Set("Content-Type", "application/json")
	if _, err := ap.js.PublishMsg(ctx, m); err != nil {
		return rec, fmt.Errorf("publish the decision on %s: %w", rec.ID, err)
	}
	return rec, nil
}

func (rec ApprovalRecord) votedBy(by string) bool {
	return slices.ContainsFunc(rec.Votes, func(v Vote) bool { return strings.EqualFold(v.By, by) })
}

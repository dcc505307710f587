package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/riposte-soar/riposte/internal/engine"
	"github.com/riposte-soar/riposte/internal/queue"
)

// outcomeStatuses are the statuses an outcome can have.
var outcomeStatuses = []string{"succeeded", "failed", "shadowed", "unmatched"}

// outcomeDoc is what the tools read of an outcome (docs/playbooks.md).
type outcomeDoc struct {
	AlertID    string    `json:"alert_id"`
	Subject    string    `json:"subject"`
	Playbook   string    `json:"playbook"`
	Status     string    `json:"status"`
	FinishedAt time.Time `json:"finished_at"`
	Steps      []struct {
		ID       string               `json:"id"`
		Action   string               `json:"action"`
		Status   string               `json:"status"`
		Error    string               `json:"error"`
		Replayed bool                 `json:"replayed"`
		Approval *engine.ApprovalInfo `json:"approval"`
	} `json:"steps"`
	Error     string `json:"error"`
	ReplayOf  string `json:"replay_of"`
	Simulated bool   `json:"simulated"`
}

// firstError is the outcome's own error, else its first step's.
func (o *outcomeDoc) firstError() string {
	if o.Error != "" {
		return o.Error
	}
	for _, st := range o.Steps {
		if st.Error != "" {
			return st.ID + ": " + st.Error
		}
	}
	return ""
}

// outcomeQuery selects outcomes.
type outcomeQuery struct {
	subjects []string // <prefix>.<playbook>, or <prefix>.> for all
	alertID  string
	statuses []string
	since    time.Time
	until    time.Time
}

// match decodes m and says whether the query selects it; an outcome that is not JSON is never
// selected.
func (q *outcomeQuery) match(m *jetstream.RawStreamMsg) (*outcomeDoc, bool) {
	if !q.since.IsZero() && m.Time.Before(q.since) || !q.until.IsZero() && m.Time.After(q.until) {
		return nil, false
	}
	// The header saves decoding the outcomes of other alerts.
	if h := m.Header.Get(queue.HeaderAlertID); q.alertID != "" && h != "" && h != q.alertID {
		return nil, false
	}
	var o outcomeDoc
	if err := json.Unmarshal(m.Data, &o); err != nil {
		return nil, false
	}
	if q.alertID != "" && o.AlertID != q.alertID || len(q.statuses) > 0 && !slices.Contains(q.statuses, o.Status) {
		return nil, false
	}
	return &o, true
}

// newOutcomeQuery is the selection of `worker outcomes` and of the console's outcomes page:
// an alert id, comma-separated playbooks (unmatched: alerts no playbook matched) and statuses,
// each empty for any.
func newOutcomeQuery(cfg queue.Config, alertID, playbooks, statuses string) (*outcomeQuery, error) {
	q := &outcomeQuery{alertID: strings.TrimSpace(alertID)}
	for _, st := range strings.Split(statuses, ",") {
		if st = strings.TrimSpace(st); st == "" {
			continue
		}
		if !slices.Contains(outcomeStatuses, st) {
			return nil, fmt.Errorf("--status %q: the statuses are %s", st, strings.Join(outcomeStatuses, ", "))
		}
		q.statuses = append(q.statuses, st)
	}
	for _, pb := range strings.Split(playbooks, ",") {
		if pb = strings.TrimSpace(pb); pb == "" {
			continue
		}
		if strings.ContainsAny(pb, ".*> \t") {
			return nil, fmt.Errorf("--playbook %q: a playbook name, without dots or wildcards", pb)
		}
		q.subjects = append(q.subjects, cfg.OutcomeSubject(pb))
	}
	if len(q.subjects) == 0 {
		q.subjects = []string{cfg.OutcomesPrefix + ".>"}
	}
	return q, nil
}

// latest opens the outcomes stream and reads the newest limit outcomes the query selects (0:
// every one), newest first; it also returns the stream's info, for a follow from its end.
func (q *outcomeQuery) latest(ctx context.Context, js jetstream.JetStream, stream string, limit int) ([]storedOutcome, *jetstream.StreamInfo, error) {
	_, info, err := openStream(ctx, js, stream, "outcomes stream")
	if err != nil {
		return nil, nil, err
	}
	found, err := q.newest(ctx, js, stream, info.State.FirstSeq, info.State.LastSeq, limit)
	return found, info, err
}

// storedOutcome is one selected outcome and where it is stored.
type storedOutcome struct {
	msg *jetstream.RawStreamMsg
	doc *outcomeDoc
}

// newest reads the stream backwards, in ever larger chunks read forwards, until limit outcomes
// (0: every one) are found, the stream's start is reached, or (with since) the outcomes are older
// than the query wants. So a search for the latest outcomes reads only the stream's end.
func (q *outcomeQuery) newest(ctx context.Context, js jetstream.JetStream, stream string, first, last uint64, limit int) ([]storedOutcome, error) {
	var out []storedOutcome
	chunk := uint64(256)
	for hi := last; hi >= first && hi > 0; {
		lo := first
		if hi-first+1 > chunk {
			lo = hi - chunk + 1
		}
		var got []storedOutcome
		older := false
		err := scanForward(ctx, js, stream, q.subjects, lo, time.Time{}, hi, func(m *jetstream.RawStreamMsg) bool {
			if !q.since.IsZero() && m.Time.Before(q.since) {
				older = true // stored in order: everything before this chunk is older still
			}
			if o, ok := q.match(m); ok {
				got = append(got, storedOutcome{msg: m, doc: o})
			}
			return true
		})
		if err != nil {
			return nil, err
		}
		for i := len(got) - 1; i >= 0 && (limit == 0 || len(out) < limit); i-- {
			out = append(out, got[i])
		}
		if older || lo == first || limit > 0 && len(out) >= limit {
			break
		}
		hi = lo - 1
		chunk = min(chunk*2, 1<<16)
	}
	return out, nil
}

// feed is one stream that followStreams reads: the messages on subjects stored from sequence
// from (0: those stored after the follow begins), each handed to show, which prints it if it
// wants it and says whether it did.
type feed struct {
	stream   string
	subjects []string
	from     uint64
	show     func(*jetstream.RawStreamMsg) bool
}

// followStreams prints what the feeds select as it is stored, in the order it arrives, until ctx
// ends or count messages (0: no limit) have been printed; following calls back once every feed
// is in place. `worker outcomes --follow` and
// `worker watch` both follow through it: each feed is an ordered consumer, so nothing stored
// while the tool runs is missed, across reconnects too. Each caller opens its streams first
// (openStream names a missing one and its flag), so that `outcomes --follow`, which reads its
// stream's info for the newest, reads it once.
func followStreams(ctx context.Context, js jetstream.JetStream, feeds []feed, count int, following func()) error {
	type got struct {
		f   *feed
		msg *jetstream.RawStreamMsg
		err error
	}
	arrived := make(chan got)
	stopped := make(chan struct{})
	defer close(stopped)
	for i := range feeds {
		f := &feeds[i]
		cfg := jetstream.OrderedConsumerConfig{FilterSubjects: f.subjects, DeliverPolicy: jetstream.DeliverNewPolicy}
		if f.from > 0 {
			cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, f.from
		}
		c, err := js.OrderedConsumer(ctx, f.stream, cfg)
		if err != nil {
			return fmt.Errorf("follow stream %q: %w", f.stream, err)
		}
		it, err := c.Messages()
		if err != nil {
			return fmt.Errorf("follow stream %q: %w", f.stream, err)
		}
		defer it.Stop() // Next waits without ctx: only Stop ends the goroutine below
		go func() {
			for {
				m, err := it.Next()
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					return
				}
				var raw *jetstream.RawStreamMsg
				if err == nil {
					raw, err = rawFromMsg(m)
				}
				if err != nil {
					err = fmt.Errorf("follow stream %q: %w", f.stream, err)
				}
				select {
				case arrived <- got{f, raw, err}:
				case <-stopped:
					return
				}
				if err != nil {
					return
				}
			}
		}()
	}
	following()
	for printed := 0; count == 0 || printed < count; {
		select {
		case <-ctx.Done():
			return nil
		case g := <-arrived:
			if g.err != nil {
				return g.err
			}
			if g.f.show(g.msg) {
				printed++
			}
		}
	}
	return nil
}

// feed is the outcomes the query selects, stored from sequence from, printed by r.
func (q *outcomeQuery) feed(stream string, from uint64, r *renderer) feed {
	return feed{stream: stream, subjects: q.subjects, from: from, show: func(m *jetstream.RawStreamMsg) bool {
		o, ok := q.match(m)
		if ok {
			r.outcome(m, o)
		}
		return ok
	}}
}

func cmdOutcomes(ctx context.Context, args []string, env environ, _ io.Reader, stdout, stderr io.Writer) error {
	var (
		tf                           toolFlags
		alertID, playbooks, statuses string
		asJSON, follow               bool
		limit                        int
	)
	f := newEnvFlags("outcomes", env)
	tf.define(f, false, false, true)
	f.String(&alertID, "alert-id", "", "", "only the outcomes of this alert id")
	f.String(&playbooks, "playbook", "", "", "only these playbooks, comma-separated (unmatched: alerts no playbook matched)")
	f.String(&statuses, "status", "", "", "only these statuses, comma-separated: "+strings.Join(outcomeStatuses, ", "))
	since, until := defineTimes(f, "outcomes")
	f.Bool(&asJSON, "json", "", false, "each outcome as stored, one JSON object per line, instead of the table")
	f.Int(&limit, "limit", "", 50, "at most this many, newest first (0: every one)")
	f.Bool(&follow, "follow", "", false, "after the newest, keep printing new outcomes as they are stored, until interrupted")
	if err := parseFlags(f, args, stderr); err != nil {
		return err
	}
	q, err := newOutcomeQuery(tf.cfg, alertID, playbooks, statuses)
	if err != nil {
		return err
	}
	q.since, q.until = since.t, until.t
	switch {
	case limit < 0:
		return fmt.Errorf("--limit must be 0 (every one) or more, got %d", limit)
	case follow && !q.until.IsZero():
		return errors.New("--follow prints outcomes as they come: it does not go with --until")
	case !q.since.IsZero() && !q.until.IsZero() && q.until.Before(q.since):
		return fmt.Errorf("--until %s is before --since %s", until, since)
	}
	nc, js, err := tf.connect(env, "riposte-outcomes")
	if err != nil {
		return err
	}
	defer nc.Close()
	found, info, err := q.latest(ctx, js, tf.cfg.OutcomesStream, limit)
	if err != nil {
		return err
	}
	r := &renderer{out: stdout, json: asJSON}
	for _, o := range found {
		r.outcome(o.msg, o.doc)
	}
	if !follow {
		if !asJSON {
			fmt.Fprintf(stderr, "%d outcome(s), newest first\n", len(found))
		}
		return nil
	}
	return followStreams(ctx, js, []feed{q.feed(tf.cfg.OutcomesStream, info.State.LastSeq+1, r)}, 0, func() {
		fmt.Fprintf(stderr, "following %s on %s\n", strings.Join(q.subjects, ", "), tf.url)
	})
}

// renderer prints stored outcomes and dead letters, as table rows for people or as one JSON
// object per line: `worker outcomes` (the newest, then --follow) and `worker dlq list` print
// through it, so a row looks the same however it was found.
type renderer struct {
	out         io.Writer
	json        bool
	outcomeHead bool
	dlqHead     bool
}

const (
	timeCol = 20
	idCol   = 24
)

// outcome prints one outcome: as stored for --json, else a row of time, alert id, playbook,
// status, steps (id:status) and the first error.
func (r *renderer) outcome(m *jetstream.RawStreamMsg, o *outcomeDoc) {
	if r.json {
		var b bytes.Buffer
		if json.Compact(&b, m.Data) == nil {
			fmt.Fprintln(r.out, b.String())
		}
		return
	}
	if !r.outcomeHead {
		r.outcomeHead = true
		fmt.Fprintln(r.out, row([]int{timeCol, idCol, 28, 10, 36}, "TIME", "ALERT ID", "PLAYBOOK", "STATUS", "STEPS", "ERROR"))
	}
	steps := make([]string, 0, len(o.Steps))
	for _, st := range o.Steps {
		s := st.ID + ":" + st.Status
		if st.Replayed {
			s += "(journal)"
		}
		steps = append(steps, s)
	}
	status, playbook := o.Status, o.Playbook
	if o.ReplayOf != "" {
		status += " (replay of " + o.ReplayOf + ")"
	}
	if playbook == "" {
		playbook = "-"
	}
	fmt.Fprintln(r.out, row([]int{timeCol, idCol, 28, 10, 36},
		m.Time.UTC().Format(time.RFC3339), o.AlertID, playbook, status, strings.Join(steps, ","), oneLine(o.firstError(), 160)))
}

// deadLetter prints one dead letter: a JSON summary for --json, else a row of sequence, time,
// reason, subject, alert id and the last error.
func (r *renderer) deadLetter(d *deadLetter) {
	if r.json {
		b, _ := json.Marshal(d.summary())
		fmt.Fprintln(r.out, string(b))
		return
	}
	widths := []int{7, timeCol, 14, 36, idCol}
	if !r.dlqHead {
		r.dlqHead = true
		fmt.Fprintln(r.out, row(widths, "SEQ", "TIME", "REASON", "SUBJECT", "ALERT ID", "ERROR"))
	}
	fmt.Fprintln(r.out, row(widths, fmt.Sprint(d.Seq), d.Time.UTC().Format(time.RFC3339), d.Reason, d.Subject, d.AlertID, oneLine(d.LastError, 160)))
}

// row pads each cell but the last to its width (a longer one just pushes the rest along).
func row(widths []int, cells ...string) string {
	var b strings.Builder
	for i, c := range cells {
		if c == "" {
			c = "-"
		}
		if i == len(cells)-1 {
			b.WriteString(c)
			break
		}
		b.WriteString(c)
		pad := 2
		if i < len(widths) && len(c) < widths[i] {
			pad += widths[i] - len(c)
		}
		b.WriteString(strings.Repeat(" ", pad))
	}
	return strings.TrimRight(b.String(), " ")
}

// oneLine keeps a table cell on one line, at most n characters.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

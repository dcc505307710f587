package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/riposte-soar/riposte/internal/jsonval"
	"github.com/riposte-soar/riposte/internal/queue"
)

const dlqUsage = `usage: worker dlq <command> [flags] [args]

commands:
  list              the dead letters as a table (--json: one JSON object per line)
  show SEQ          one dead letter whole: headers, detail, last outcome, payload
  replay SEQ...     publish dead letters back to their original subjects
  replay [filters]  the same for every dead letter the filters select (--all: every one)
  delete SEQ...     remove dead letters without replaying them

filters (list, replay): --reason, --subject (NATS wildcards), --alert-id, --since, --until
("worker dlq <command> -h" lists every flag and its environment variable; docs/operations.md
is the runbook)
`

// dlqReasons are the reasons a dead letter can have, as in its subject.
var dlqReasons = []string{"invalid", "too_large", "exhausted", "unpublishable"}

// opTimeout bounds one request to the server.
const opTimeout = 10 * time.Second

// cmdDLQ lists, shows, replays and deletes dead letters.
func cmdDLQ(ctx context.Context, args []string, env environ, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, dlqUsage)
		return errFlagsShown
	}
	switch args[0] {
	case "list", "ls":
		return cmdDLQList(ctx, args[1:], env, stdout, stderr)
	case "show":
		return cmdDLQShow(ctx, args[1:], env, stdout, stderr)
	case "replay":
		return cmdDLQReplay(ctx, args[1:], env, stdout, stderr)
	case "delete", "rm":
		return cmdDLQDelete(ctx, args[1:], env, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, dlqUsage)
		return errHelpShown
	}
	fmt.Fprintf(stderr, "worker dlq: unknown command %q\n\n%s", args[0], dlqUsage)
	return errFlagsShown
}

// toolFlags are the connection and stream settings of the commands that read the streams, from
// the same flags and variables as the worker's.
type toolFlags struct {
	url string
	cfg queue.Config
}

func (t *toolFlags) define(f *envFlags, alerts, dlq, outcomes bool) {
	d := queue.DefaultConfig()
	t.cfg = d
	f.String(&t.url, "nats-url", "NATS_URL", nats.DefaultURL, "server to connect to (NATS_* credentials as the worker's)")
	if alerts {
		f.String(&t.cfg.AlertsStream, "alerts-stream", "RIPOSTE_ALERTS_STREAM", d.AlertsStream, "stream of alerts")
	}
	if dlq {
		f.String(&t.cfg.DLQStream, "dlq-stream", "RIPOSTE_DLQ_STREAM", d.DLQStream, "stream of dead letters")
		f.String(&t.cfg.DLQPrefix, "dlq-prefix", "RIPOSTE_DLQ_PREFIX", d.DLQPrefix, "dead letters are on <prefix>.<reason>")
	}
	if outcomes {
		f.String(&t.cfg.OutcomesStream, "outcomes-stream", "RIPOSTE_OUTCOMES_STREAM", d.OutcomesStream, "stream of outcomes")
		f.String(&t.cfg.OutcomesPrefix, "outcomes-prefix", "RIPOSTE_OUTCOMES_PREFIX", d.OutcomesPrefix, "outcomes are on <prefix>.<playbook>")
	}
}

// defineApprovals adds the approvals' names, as the worker's flags and variables set them.
func (t *toolFlags) defineApprovals(f *envFlags) {
	d := queue.DefaultConfig()
	f.String(&t.cfg.ApprovalsStream, "approvals-stream", "RIPOSTE_APPROVALS_STREAM", d.ApprovalsStream, "stream of approval requests and decisions")
	f.String(&t.cfg.ApprovalsPrefix, "approvals-prefix", "RIPOSTE_APPROVALS_PREFIX", d.ApprovalsPrefix, "approval requests are on <prefix>.<playbook>, decisions on <prefix>.decisions")
	f.String(&t.cfg.ApprovalsBucket, "approvals-bucket", "RIPOSTE_APPROVALS_BUCKET", d.ApprovalsBucket, "key-value bucket of the approval gates")
}

// connect checks the names and dials the server.
func (t *toolFlags) connect(env environ, name string) (*nats.Conn, jetstream.JetStream, error) {
	if err := t.cfg.Validate(); err != nil {
		return nil, nil, err
	}
	nc, err := clientConnect(t.url, env, name)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", t.url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// stream opens a stream, saying which setting names it when it is not there.
func openStream(ctx context.Context, js jetstream.JetStream, name, what string) (jetstream.Stream, *jetstream.StreamInfo, error) {
	octx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	s, err := js.Stream(octx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil, fmt.Errorf("no stream %q (the %s; set by --%s-stream): has a worker run against this server?", name, what, strings.Fields(what)[0])
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open stream %q: %w", name, err)
	}
	info, err := s.Info(octx)
	if err != nil {
		return nil, nil, fmt.Errorf("read stream %q: %w", name, err)
	}
	return s, info, nil
}

// parseWithArgs parses flags that may come before, between or after positional arguments
// (`replay 7 --keep 9`), returning the positional ones.
func parseWithArgs(f *envFlags, args []string, stderr io.Writer) ([]string, error) {
	f.takesFile = true
	var pos []string
	for {
		if err := parseFlags(f, args, stderr); err != nil {
			return nil, err
		}
		rest := f.fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// parseSeqs reads dead-letter sequences given as arguments.
func parseSeqs(args []string) ([]uint64, error) {
	seqs := make([]uint64, 0, len(args))
	for _, a := range args {
		n, err := strconv.ParseUint(a, 10, 64)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("bad sequence %q: a dead letter's sequence is a positive whole number, as in the SEQ column of `worker dlq list`", a)
		}
		seqs = append(seqs, n)
	}
	return seqs, nil
}

// timeFlag is --since or --until: an RFC 3339 time, or a duration meaning that long ago.
type timeFlag struct {
	name string
	t    time.Time
	now  func() time.Time
}

func (f *timeFlag) String() string {
	if f == nil || f.t.IsZero() {
		return ""
	}
	return f.t.Format(time.RFC3339)
}

func (f *timeFlag) Set(s string) error {
	t, err := parseWhen(s, f.now())
	if err != nil {
		return err
	}
	f.t = t
	return nil
}

// parseWhen reads an RFC 3339 time or a duration ago (2h, 30m, 90s).
func parseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-11-22T10:00:00Z) nor a duration ago (2h, 30m)", s)
}

// defineTimes declares --since and --until.
func defineTimes(f *envFlags, what string) (since, until *timeFlag) {
	since, until = &timeFlag{name: "since", now: time.Now}, &timeFlag{name: "until", now: time.Now}
	f.fs.Var(since, "since", "only "+what+" stored at or after this time: RFC 3339, or a duration ago (2h)")
	f.fs.Var(until, "until", "only "+what+" stored at or before this time: RFC 3339, or a duration ago (30m)")
	return since, until
}

// dlqFilter selects dead letters.
type dlqFilter struct {
	reasons []string
	subject []string // tokens of a NATS subject filter on the original subject
	alertID string
	since   time.Time
	until   time.Time
}

func (df *dlqFilter) any() bool {
	return len(df.reasons) > 0 || df.subject != nil || df.alertID != "" || !df.since.IsZero() || !df.until.IsZero()
}

func (df *dlqFilter) match(d *deadLetter) bool {
	switch {
	case len(df.reasons) > 0 && !slices.Contains(df.reasons, d.Reason):
		return false
	case df.subject != nil && !subjectMatches(df.subject, d.Subject):
		return false
	case df.alertID != "" && d.AlertID != df.alertID:
		return false
	case !df.since.IsZero() && d.Time.Before(df.since):
		return false
	case !df.until.IsZero() && d.Time.After(df.until):
		return false
	}
	return true
}

// dlqFilterFlags declares the filters of list and replay.
type dlqFilterFlags struct {
	reason, subject, alertID string
	since, until             *timeFlag
}

func (ff *dlqFilterFlags) define(f *envFlags) {
	f.String(&ff.reason, "reason", "", "", "only these reasons, comma-separated: "+strings.Join(dlqReasons, ", "))
	f.String(&ff.subject, "subject", "", "", "only alerts that arrived on subjects matching this NATS filter (* and > wildcards), e.g. soar.alerts.checkpoint.>")
	f.String(&ff.alertID, "alert-id", "", "", "only the dead letters of this alert id")
	ff.since, ff.until = defineTimes(f, "dead letters")
}

func (ff *dlqFilterFlags) filter() (*dlqFilter, error) {
	df := &dlqFilter{alertID: ff.alertID, since: ff.since.t, until: ff.until.t}
	for _, r := range strings.Split(ff.reason, ",") {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		if !slices.Contains(dlqReasons, r) {
			return nil, fmt.Errorf("--reason %q: the reasons are %s", r, strings.Join(dlqReasons, ", "))
		}
		df.reasons = append(df.reasons, r)
	}
	if ff.subject != "" {
		toks, err := parseSubjectFilter(ff.subject)
		if err != nil {
			return nil, fmt.Errorf("--subject %q: %w", ff.subject, err)
		}
		df.subject = toks
	}
	if !df.since.IsZero() && !df.until.IsZero() && df.until.Before(df.since) {
		return nil, fmt.Errorf("--until %s is before --since %s", ff.until, ff.since)
	}
	return df, nil
}

// parseSubjectFilter checks a NATS subject filter and splits it into tokens.
func parseSubjectFilter(s string) ([]string, error) {
	if s == "" || strings.IndexFunc(s, unicode.IsSpace) >= 0 {
		return nil, errors.New("a subject filter is dot-separated tokens without spaces")
	}
	toks := strings.Split(s, ".")
	for i, t := range toks {
		switch {
		case t == "":
			return nil, errors.New("a subject filter has no empty tokens")
		case t == ">" && i != len(toks)-1:
			return nil, errors.New(`">" may only be the last token`)
		case t != "*" && t != ">" && strings.ContainsAny(t, "*>"):
			return nil, errors.New(`"*" and ">" must be whole tokens`)
		}
	}
	return toks, nil
}

// subjectMatches matches a subject against filter tokens: * one token, > one or more trailing.
func subjectMatches(filter []string, subject string) bool {
	toks := strings.Split(subject, ".")
	for i, ft := range filter {
		if ft == ">" {
			return len(toks) > i
		}
		if i >= len(toks) || ft != "*" && ft != toks[i] {
			return false
		}
	}
	return len(toks) == len(filter)
}

// deadLetter is one stored dead letter, its headers read.
type deadLetter struct {
	Seq           uint64
	Time          time.Time
	DLQSubject    string
	Reason        string
	Detail        string
	Subject       string // the alert's original subject
	AlertID       string
	Deliveries    string
	AlertsSeq     string
	OriginalMsgID string
	ReplayOf      string // the dead letter this alert was replayed from, when it was
	Truncated     string
	LastError     string
	msg           *jetstream.RawStreamMsg
}

func readDeadLetter(m *jetstream.RawStreamMsg) *deadLetter {
	h := m.Header
	d := &deadLetter{
		Seq: m.Sequence, Time: m.Time, DLQSubject: m.Subject,
		Reason: h.Get(queue.HeaderDLQReason), Detail: h.Get(queue.HeaderDLQDetail),
		Subject: h.Get(queue.HeaderSubject), AlertID: h.Get(queue.HeaderAlertID),
		Deliveries: h.Get(queue.HeaderDeliveries), AlertsSeq: h.Get(queue.HeaderStreamSeq),
		OriginalMsgID: h.Get(queue.HeaderOriginalMsgID), ReplayOf: h.Get(queue.HeaderReplayOf),
		Truncated: h.Get(queue.HeaderTruncated), msg: m,
	}
	d.LastError = d.Detail
	if e := lastFailedStep(h.Get(queue.HeaderLastOutcome)); e != "" {
		d.LastError = e
	}
	return d
}

// lastFailedStep is the error of the last failed step in a Riposte-Last-Outcome array, as
// "playbook/step: error", or the last outcome's own error; "" when there is none.
func lastFailedStep(lastOutcome string) string {
	if lastOutcome == "" {
		return ""
	}
	var outs []outcomeDoc
	if err := json.Unmarshal([]byte(lastOutcome), &outs); err != nil {
		return ""
	}
	found := ""
	for _, o := range outs {
		for _, st := range o.Steps {
			if st.Status == "failed" {
				found = o.Playbook + "/" + st.ID + ": " + st.Error
			}
		}
		if found == "" && o.Error != "" {
			found = o.Playbook + ": " + o.Error
		}
	}
	return found
}

// rawFromMsg turns a consumer's message into the form GetMsg returns.
func rawFromMsg(m jetstream.Msg) (*jetstream.RawStreamMsg, error) {
	meta, err := m.Metadata()
	if err != nil {
		return nil, err
	}
	return &jetstream.RawStreamMsg{Subject: m.Subject(), Sequence: meta.Sequence.Stream, Header: m.Headers(), Data: m.Data(), Time: meta.Timestamp}, nil
}

// scanForward reads a stream's messages on subjects (all when empty) in order, from sequence
// from (or, when from is 0, from the time since, or from the start), up to sequence to, handing
// each to fn until it returns false. It reads through a short-lived consumer of its own, in
// batches, rather than with a request per message.
func scanForward(ctx context.Context, js jetstream.JetStream, stream string, subjects []string, from uint64, since time.Time, to uint64, fn func(*jetstream.RawStreamMsg) bool) error {
	if to == 0 || from > to {
		return nil
	}
	cfg := jetstream.ConsumerConfig{
		Description: "riposte: a read of worker dlq or worker outcomes", AckPolicy: jetstream.AckNonePolicy,
		FilterSubjects: subjects, InactiveThreshold: 5 * time.Minute, MemoryStorage: true, Replicas: 1,
	}
	switch {
	case from > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	case !since.IsZero():
		start := since
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	octx, cancel := context.WithTimeout(ctx, opTimeout)
	c, err := js.CreateConsumer(octx, stream, cfg)
	cancel()
	if err != nil {
		return fmt.Errorf("read stream %q: %w", stream, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
		defer cancel()
		_ = js.DeleteConsumer(dctx, stream, c.CachedInfo().Name)
	}()
	// What is there now, and no more: a stream that grows while it is read ends the read anyway.
	remaining := c.CachedInfo().NumPending
	for remaining > 0 {
		batch, err := c.Fetch(int(min(remaining, 256)), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("read stream %q: %w", stream, err)
		}
		got, done := 0, false
		for m := range batch.Messages() {
			got++
			remaining--
			if done {
				continue
			}
			raw, err := rawFromMsg(m)
			if err != nil {
				return err
			}
			if raw.Sequence > to || !fn(raw) || raw.Sequence == to {
				done = true
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("read stream %q: %w", stream, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if done || got == 0 { // got 0: messages deleted meanwhile
			return nil
		}
	}
	return nil
}

// eachDeadLetter hands fn the dead letters the filter selects, oldest first, at most limit (0:
// all), until fn returns false. Those stored after it started are left out: a replay that is
// dead-lettered again is not replayed again in the same run.
func eachDeadLetter(ctx context.Context, js jetstream.JetStream, cfg queue.Config, df *dlqFilter, limit int, fn func(*deadLetter) bool) error {
	_, info, err := openStream(ctx, js, cfg.DLQStream, "dlq stream")
	if err != nil {
		return err
	}
	var subjects []string
	for _, r := range df.reasons {
		subjects = append(subjects, cfg.DLQSubject(r))
	}
	n := 0
	return scanForward(ctx, js, cfg.DLQStream, subjects, 0, df.since, info.State.LastSeq, func(m *jetstream.RawStreamMsg) bool {
		if !df.until.IsZero() && m.Time.After(df.until) {
			return false // stored in order: the rest are later still
		}
		d := readDeadLetter(m)
		if !df.match(d) {
			return true
		}
		n++
		return fn(d) && (limit == 0 || n < limit)
	})
}

// getDeadLetter reads one dead letter by its sequence.
func getDeadLetter(ctx context.Context, s jetstream.Stream, stream string, seq uint64) (*deadLetter, error) {
	octx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	m, err := s.GetMsg(octx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("no dead letter at sequence %d in %s (see `worker dlq list`)", seq, stream)
	}
	if err != nil {
		return nil, fmt.Errorf("read dead letter %d: %w", seq, err)
	}
	d := readDeadLetter(m)
	if d.Reason == "" {
		return nil, fmt.Errorf("message %d in %s is not a dead letter (it has no %s header)", seq, stream, queue.HeaderDLQReason)
	}
	return d, nil
}

func cmdDLQList(ctx context.Context, args []string, env environ, stdout, stderr io.Writer) error {
	var (
		tf     toolFlags
		ff     dlqFilterFlags
		asJSON bool
		limit  int
	)
	f := newEnvFlags("dlq list", env)
	tf.define(f, false, true, false)
	ff.define(f)
	f.Bool(&asJSON, "json", "", false, "one JSON object per line instead of the table")
	f.Int(&limit, "limit", "", 0, "at most this many, oldest first (0: all)")
	if err := parseFlags(f, args, stderr); err != nil {
		return err
	}
	df, err := ff.filter()
	if err != nil {
		return err
	}
	nc, js, err := tf.connect(env, "riposte-dlq")
	if err != nil {
		return err
	}
	defer nc.Close()
	r := &renderer{out: stdout, json: asJSON}
	n := 0
	err = eachDeadLetter(ctx, js, tf.cfg, df, limit, func(d *deadLetter) bool {
		r.deadLetter(d)
		n++
		return true
	})
	if err != nil {
		return err
	}
	if !asJSON {
		fmt.Fprintf(stderr, "%d dead letter(s) in %s\n", n, tf.cfg.DLQStream)
	}
	return nil
}

func cmdDLQShow(ctx context.Context, args []string, env environ, stdout, stderr io.Writer) error {
	var (
		tf     toolFlags
		asJSON bool
	)
	f := newEnvFlags("dlq show", env)
	f.fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: worker dlq show [flags] SEQ")
		f.fs.PrintDefaults()
	}
	tf.define(f, false, true, false)
	f.Bool(&asJSON, "json", "", false, "the dead letter as one JSON object")
	pos, err := parseWithArgs(f, args, stderr)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("give one dead letter's sequence (the SEQ column of `worker dlq list`), got %d arguments", len(pos))
	}
	seqs, err := parseSeqs(pos)
	if err != nil {
		return err
	}
	nc, js, err := tf.connect(env, "riposte-dlq")
	if err != nil {
		return err
	}
	defer nc.Close()
	s, _, err := openStream(ctx, js, tf.cfg.DLQStream, "dlq stream")
	if err != nil {
		return err
	}
	d, err := getDeadLetter(ctx, s, tf.cfg.DLQStream, seqs[0])
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(d.full())
	}
	d.print(stdout, tf.cfg.DLQStream)
	return nil
}

// deadLetterJSON is a dead letter in `list --json`; full adds what `show --json` prints.
type deadLetterJSON struct {
	Seq           uint64            `json:"seq"`
	Time          time.Time         `json:"time"`
	DLQSubject    string            `json:"dlq_subject"`
	Reason        string            `json:"reason"`
	Subject       string            `json:"subject"`
	AlertID       string            `json:"alert_id"`
	Error         string            `json:"error"`
	Detail        string            `json:"detail"`
	Deliveries    int               `json:"deliveries,omitempty"`
	AlertsSeq     uint64            `json:"alerts_seq,omitempty"`
	OriginalMsgID string            `json:"original_msg_id,omitempty"`
	ReplayOf      string            `json:"replay_of,omitempty"`
	PayloadBytes  int               `json:"payload_bytes"`
	Truncated     string            `json:"truncated_from,omitempty"`
	Headers       map[string]string `json:"headers,omitempty"`
	LastOutcome   json.RawMessage   `json:"last_outcome,omitempty"`
	Payload       json.RawMessage   `json:"payload,omitempty"`      // when it is JSON
	PayloadText   *string           `json:"payload_text,omitempty"` // when it is not
}

func (d *deadLetter) summary() deadLetterJSON {
	deliveries, _ := strconv.Atoi(d.Deliveries)
	alertsSeq, _ := strconv.ParseUint(d.AlertsSeq, 10, 64)
	return deadLetterJSON{
		Seq: d.Seq, Time: d.Time.UTC(), DLQSubject: d.DLQSubject, Reason: d.Reason, Subject: d.Subject,
		AlertID: d.AlertID, Error: d.LastError, Detail: d.Detail, Deliveries: deliveries, AlertsSeq: alertsSeq,
		OriginalMsgID: d.OriginalMsgID, ReplayOf: d.ReplayOf, PayloadBytes: len(d.msg.Data), Truncated: d.Truncated,
	}
}

func (d *deadLetter) full() deadLetterJSON {
	j := d.summary()
	j.Headers = map[string]string{}
	for k, vs := range d.msg.Header {
		if k != queue.HeaderLastOutcome {
			j.Headers[k] = strings.Join(vs, ", ")
		}
	}
	if lo := d.msg.Header.Get(queue.HeaderLastOutcome); json.Valid([]byte(lo)) {
		j.LastOutcome = json.RawMessage(lo)
	}
	if json.Valid(d.msg.Data) {
		j.Payload = json.RawMessage(d.msg.Data)
	} else {
		text := string(d.msg.Data)
		j.PayloadText = &text
	}
	return j
}

// print is `dlq show`: the dead letter for people.
func (d *deadLetter) print(w io.Writer, stream string) {
	fmt.Fprintf(w, "dead letter %d in %s, on %s, stored %s\n\n", d.Seq, stream, d.DLQSubject, d.Time.UTC().Format(time.RFC3339))
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%-16s %s\n", k+":", v)
		}
	}
	row("reason", d.Reason)
	row("detail", d.Detail)
	if d.LastError != d.Detail {
		row("last error", d.LastError)
	}
	row("subject", d.Subject)
	row("alert id", d.AlertID)
	row("deliveries", d.Deliveries)
	row("alerts sequence", d.AlertsSeq)
	row("original msg id", d.OriginalMsgID)
	row("replay of", d.ReplayOf)
	if d.Truncated != "" {
		row("truncated", fmt.Sprintf("the payload was cut from %s to %d bytes to fit", d.Truncated, len(d.msg.Data)))
	}
	fmt.Fprintln(w, "\nheaders:")
	keys := make([]string, 0, len(d.msg.Header))
	for k := range d.msg.Header {
		if k != queue.HeaderLastOutcome {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range d.msg.Header[k] {
			fmt.Fprintf(w, "  %s: %s\n", k, v)
		}
	}
	if lo := d.msg.Header.Get(queue.HeaderLastOutcome); lo != "" {
		fmt.Fprintln(w, "\nlast outcome:")
		fmt.Fprintln(w, prettyOrText(lo))
	}
	fmt.Fprintf(w, "\npayload (%d bytes", len(d.msg.Data))
	switch {
	case json.Valid(d.msg.Data):
		fmt.Fprintf(w, ", JSON):\n%s\n", prettyOrText(string(d.msg.Data)))
	case printable(d.msg.Data):
		fmt.Fprintf(w, ", not JSON):\n%s\n", d.msg.Data)
	default:
		fmt.Fprintf(w, ", not JSON, not printable: quoted):\n%s\n", strconv.Quote(string(d.msg.Data)))
	}
}

// prettyOrText indents JSON, and gives anything else back as it is.
func prettyOrText(s string) string {
	var b bytes.Buffer
	if err := json.Indent(&b, []byte(s), "", "  "); err != nil {
		return s
	}
	return b.String()
}

// printable says text can go to a terminal as it is.
func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if unicode.IsControl(r) && r != '\n' && r != '\t' && r != '\r' {
			return false
		}
	}
	return true
}

func cmdDLQDelete(ctx context.Context, args []string, env environ, stdout, stderr io.Writer) error {
	var tf toolFlags
	f := newEnvFlags("dlq delete", env)
	f.fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: worker dlq delete [flags] SEQ...   (removes dead letters without replaying them)")
		f.fs.PrintDefaults()
	}
	tf.define(f, false, true, false)
	pos, err := parseWithArgs(f, args, stderr)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return errors.New("give the sequences of the dead letters to delete (the SEQ column of `worker dlq list`)")
	}
	seqs, err := parseSeqs(pos)
	if err != nil {
		return err
	}
	nc, js, err := tf.connect(env, "riposte-dlq")
	if err != nil {
		return err
	}
	defer nc.Close()
	s, _, err := openStream(ctx, js, tf.cfg.DLQStream, "dlq stream")
	if err != nil {
		return err
	}
	failed := 0
	for _, seq := range seqs {
		if _, err := getDeadLetter(ctx, s, tf.cfg.DLQStream, seq); err != nil {
			fmt.Fprintf(stdout, "%d  not deleted: %v\n", seq, err)
			failed++
			continue
		}
		octx, cancel := context.WithTimeout(ctx, opTimeout)
		err := s.DeleteMsg(octx, seq)
		cancel()
		if err != nil {
			fmt.Fprintf(stdout, "%d  not deleted: %v\n", seq, err)
			failed++
			continue
		}
		fmt.Fprintf(stdout, "%d  deleted\n", seq)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d dead letters not deleted", failed, len(seqs))
	}
	return nil
}

// replayDropHeaders are the headers the dead-lettering added, or that would make the server
// refuse or reinterpret the republish; Nats-Msg-Id there is the dead letter's own.
var replayDropHeaders = []string{
	nats.MsgIdHdr, queue.HeaderDLQReason, queue.HeaderDLQDetail, queue.HeaderAlertID, queue.HeaderSubject,
	queue.HeaderDeliveries, queue.HeaderStreamSeq, queue.HeaderOriginalMsgID, queue.HeaderLastOutcome,
	queue.HeaderTruncated, queue.HeaderTruncatedHeaders, queue.HeaderReplayOf,
	"Nats-Expected-Stream", "Nats-Expected-Last-Msg-Id", "Nats-Expected-Last-Sequence",
	"Nats-Expected-Last-Subject-Sequence", "Nats-Rollup",
}

// dupMargin allows for the server's duplicate-window timer, which forgets an id a little after
// the window.
const dupMargin = time.Second

// replayer republishes dead letters.
type replayer struct {
	js        jetstream.JetStream
	cfg       queue.Config
	dlq       jetstream.Stream
	alerts    jetstream.Stream
	alertsDup time.Duration // the alerts stream's duplicate window
	dlqDup    time.Duration // the dead-letter stream's
	keep      bool
	out       io.Writer
}

// openReplayer opens the dead-letter and alerts streams for replays that print their lines to
// out: `worker dlq replay` and the console's replay button. It also returns the dead-letter
// stream's info, whose time a dry run compares the duplicate windows with.
func openReplayer(ctx context.Context, js jetstream.JetStream, cfg queue.Config, keep bool, out io.Writer) (*replayer, *jetstream.StreamInfo, error) {
	dlq, dlqInfo, err := openStream(ctx, js, cfg.DLQStream, "dlq stream")
	if err != nil {
		return nil, nil, err
	}
	alerts, alertsInfo, err := openStream(ctx, js, cfg.AlertsStream, "alerts stream")
	if err != nil {
		return nil, nil, err
	}
	return &replayer{
		js: js, cfg: cfg, dlq: dlq, alerts: alerts, keep: keep, out: out,
		alertsDup: alertsInfo.Config.Duplicates, dlqDup: dlqInfo.Config.Duplicates,
	}, dlqInfo, nil
}

// replayResult is what became of one dead letter.
type replayResult int

const (
	replayedRemoved replayResult = iota
	replayedKept
	notReplayed
)

func cmdDLQReplay(ctx context.Context, args []string, env environ, stdout, stderr io.Writer) error {
	var (
		tf                toolFlags
		ff                dlqFilterFlags
		all, keep, dryRun bool
		limit             int
	)
	f := newEnvFlags("dlq replay", env)
	f.fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: worker dlq replay [flags] SEQ...   or   worker dlq replay [flags] --all|filters")
		f.fs.PrintDefaults()
	}
	tf.define(f, true, true, false)
	ff.define(f)
	f.Bool(&all, "all", "", false, "replay every dead letter (with no filters and no sequences)")
	f.Bool(&keep, "keep", "", false, "leave the dead letters in the dead-letter stream after replaying them")
	f.Bool(&dryRun, "dry-run", "", false, "list what would be replayed, and replay nothing")
	f.Int(&limit, "limit", "", 0, "replay at most this many, oldest first (0: all selected): a batch")
	pos, err := parseWithArgs(f, args, stderr)
	if err != nil {
		return err
	}
	df, err := ff.filter()
	if err != nil {
		return err
	}
	seqs, err := parseSeqs(pos)
	if err != nil {
		return err
	}
	switch {
	case len(seqs) > 0 && (df.any() || all):
		return errors.New("give either sequences or filters (or --all), not both")
	case len(seqs) == 0 && !df.any() && !all:
		return errors.New("say what to replay: sequences (worker dlq replay 7 9), filters (--reason exhausted, --subject, --alert-id, --since, --until) or --all")
	}
	nc, js, err := tf.connect(env, "riposte-dlq-replay")
	if err != nil {
		return err
	}
	defer nc.Close()
	r, dlqInfo, err := openReplayer(ctx, js, tf.cfg, keep, stdout)
	if err != nil {
		return err
	}
	dlq := r.dlq
	counts := map[replayResult]int{}
	bad, selected := 0, 0
	each := func(d *deadLetter) bool {
		selected++
		if dryRun {
			fmt.Fprintf(stdout, "%d  %s\n", d.Seq, r.preview(ctx, d, dlqInfo.TimeStamp))
		} else {
			counts[r.replay(ctx, d)]++
		}
		return ctx.Err() == nil
	}
	if len(seqs) > 0 {
		for _, seq := range seqs {
			if limit > 0 && selected >= limit || ctx.Err() != nil {
				break
			}
			d, err := getDeadLetter(ctx, dlq, tf.cfg.DLQStream, seq)
			if err != nil {
				fmt.Fprintf(stdout, "%d  not replayed: %v\n", seq, err)
				bad++
				continue
			}
			each(d)
		}
	} else if err := eachDeadLetter(ctx, js, tf.cfg, df, limit, each); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	bad += counts[notReplayed]
	switch {
	case dryRun:
		fmt.Fprintf(stderr, "dry run: %d dead letter(s) selected, none replayed\n", selected)
	default:
		fmt.Fprintf(stderr, "%d replayed (%d dead letters removed, %d kept), %d not replayed\n",
			counts[replayedRemoved]+counts[replayedKept], counts[replayedRemoved], counts[replayedKept], bad)
	}
	if bad > 0 {
		return fmt.Errorf("%d dead letter(s) not replayed; they are still in %s", bad, tf.cfg.DLQStream)
	}
	return nil
}

// replay republishes one dead letter and, once the alerts stream has stored it, removes it,
// printing one line about what happened.
func (r *replayer) replay(ctx context.Context, d *deadLetter) replayResult {
	say := func(format string, a ...any) { fmt.Fprintf(r.out, "%d  "+format+"\n", append([]any{d.Seq}, a...)...) }
	m, origID, err := r.message(ctx, d)
	if err != nil {
		say("not replayed: %v", err)
		return notReplayed
	}
	pctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	// No Nats-Expected-Stream: the header would be stored with the alert and copied into a new
	// dead letter, which the dead-letter stream would then refuse.
	ack, err := r.js.PublishMsg(pctx, m)
	if err == nil && ack.Stream != r.cfg.AlertsStream {
		err = fmt.Errorf("stream %s stored it (sequence %d), not %s: the alerts stream does not capture %s", ack.Stream, ack.Sequence, r.cfg.AlertsStream, m.Subject)
	}
	if err != nil {
		say("not replayed: publish to %s: %v", m.Subject, err)
		return notReplayed
	}
	how := ""
	if ack.Duplicate {
		// The alerts stream still remembers the id (its duplicate window since the alert was
		// first published) and dropped the copy. Republished without it, the alert keeps its
		// id, and so its journal, through Riposte-Alert-Id, which a replay's id is read from.
		until := r.dupUntil(ctx, ack.Sequence, r.alertsDup)
		m.Header.Del(nats.MsgIdHdr)
		m.Header.Set(queue.HeaderOriginalMsgID, origID)
		m.Header.Set(queue.HeaderAlertID, origID)
		ack, err = r.js.PublishMsg(pctx, m)
		if err != nil {
			say("not replayed: publish to %s: %v", m.Subject, err)
			return notReplayed
		}
		how = fmt.Sprintf(" without Nats-Msg-Id (the alerts stream still holds %q in its duplicate window%s)", origID, until)
	}
	newID := predictAlertID(m)
	idNote := "alert " + newID
	if newID == "" {
		idNote = fmt.Sprintf("alert %s:%d, its new position: its own id was %q", r.cfg.AlertsStream, ack.Sequence, d.AlertID)
	}
	line := fmt.Sprintf("replayed to %s as %s sequence %d%s (%s)", m.Subject, r.cfg.AlertsStream, ack.Sequence, how, idNote)
	if r.keep {
		say("%s; dead letter kept (--keep): replaying it again within the outcomes' duplicate window drops that run's outcome as a duplicate of this one's", line)
		return replayedKept
	}
	dctx, dcancel := context.WithTimeout(ctx, opTimeout)
	defer dcancel()
	if err := r.dlq.DeleteMsg(dctx, d.Seq); err != nil {
		say("%s; the dead letter could not be removed (%v): remove it with `worker dlq delete %d`", line, err, d.Seq)
		return replayedKept
	}
	say("%s; dead letter removed", line)
	return replayedRemoved
}

// message builds the republished alert: the original payload and headers, the producer's
// Nats-Msg-Id restored, the dead-lettering's headers dropped, Riposte-Replay-Of set. It also
// returns the restored id ("" when there is none).
func (r *replayer) message(ctx context.Context, d *deadLetter) (*nats.Msg, string, error) {
	if d.Subject == "" {
		return nil, "", fmt.Errorf("the dead letter has no %s header: not one the worker wrote", queue.HeaderSubject)
	}
	data, hdr, origID := d.msg.Data, d.msg.Header, ""
	if d.Truncated != "" || hdr.Get(queue.HeaderTruncatedHeaders) != "" {
		// Cut to fit the dead-letter stream: only the alerts stream still has it whole.
		orig, err := r.original(ctx, d)
		if err != nil {
			return nil, "", err
		}
		data, hdr, origID = orig.Data, orig.Header, orig.Header.Get(nats.MsgIdHdr)
	}
	m := nats.NewMsg(d.Subject)
	m.Data = data
	for k, vs := range hdr {
		for _, v := range vs {
			m.Header.Add(k, v)
		}
	}
	for _, k := range replayDropHeaders {
		m.Header.Del(k)
	}
	if origID == "" { // from the dead letter: the original's Nats-Msg-Id moved to Riposte-Original-Msg-Id
		origID = d.OriginalMsgID
		// An id that was not the alert's id is one cut short (an overlong id made the alert
		// invalid): restoring it would make a different alert. It stays in the header instead.
		if origID != "" && d.AlertID != "" && origID != d.AlertID {
			m.Header.Set(queue.HeaderOriginalMsgID, origID)
			origID = ""
		}
	}
	if origID != "" {
		m.Header.Set(nats.MsgIdHdr, origID)
	}
	m.Header.Set(queue.HeaderReplayOf, strconv.FormatUint(d.Seq, 10))
	return m, origID, nil
}

// original fetches a truncated dead letter's alert whole from the alerts stream.
func (r *replayer) original(ctx context.Context, d *deadLetter) (*jetstream.RawStreamMsg, error) {
	cut := fmt.Sprintf("it was cut to fit the dead-letter stream (%d bytes kept of %s)", len(d.msg.Data), d.Truncated)
	if d.Truncated == "" {
		cut = "some of its headers were cut to fit the dead-letter stream (" + d.msg.Header.Get(queue.HeaderTruncatedHeaders) + ")"
	}
	seq, err := strconv.ParseUint(d.AlertsSeq, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%s and it does not say where the original is", cut)
	}
	octx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	m, err := r.alerts.GetMsg(octx, seq)
	if err != nil || m.Subject != d.Subject || d.Truncated != "" && strconv.Itoa(len(m.Data)) != d.Truncated {
		return nil, fmt.Errorf("%s and the original is no longer in %s at sequence %d", cut, r.cfg.AlertsStream, seq)
	}
	return m, nil
}

// dupUntil is ", until <time>": when the stored message at seq leaves the duplicate window.
func (r *replayer) dupUntil(ctx context.Context, seq uint64, window time.Duration) string {
	octx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	m, err := r.alerts.GetMsg(octx, seq)
	if err != nil || window <= 0 {
		return ""
	}
	return ", until " + m.Time.Add(window+dupMargin).UTC().Format(time.RFC3339)
}

// preview is what a dry run says of a dead letter: whether it would be replayed, and whether
// the duplicate windows, as they stand at the server's time now, would change how.
func (r *replayer) preview(ctx context.Context, d *deadLetter, now time.Time) string {
	what := fmt.Sprintf("to %s (alert %s, %s)", d.Subject, d.AlertID, d.Reason)
	_, origID, err := r.message(ctx, d)
	if err != nil {
		return fmt.Sprintf("would not replay %s: %v", what, err)
	}
	var notes []string
	if seq, err := strconv.ParseUint(d.AlertsSeq, 10, 64); err == nil && origID != "" && r.alertsDup > 0 {
		octx, cancel := context.WithTimeout(ctx, opTimeout)
		orig, err := r.alerts.GetMsg(octx, seq)
		cancel()
		if err == nil && orig.Header.Get(nats.MsgIdHdr) == origID && now.Before(orig.Time.Add(r.alertsDup+dupMargin)) {
			until := orig.Time.Add(r.alertsDup + dupMargin).UTC().Format(time.RFC3339)
			notes = append(notes, "without Nats-Msg-Id (its id travels in "+queue.HeaderAlertID+"), the id being in the alerts stream's duplicate window until "+until)
		}
	}
	if r.keep {
		notes = append(notes, "dead letter kept (--keep)")
	}
	if len(notes) == 0 {
		return "would replay " + what
	}
	return "would replay " + what + "; " + strings.Join(notes, "; ")
}

// predictAlertID is the alert id the worker will give the republished alert, as
// internal/queue's decode does: its Nats-Msg-Id, else the body's top-level string "id"; ""
// when it will be known by its new stream position.
func predictAlertID(m *nats.Msg) string {
	if id := m.Header.Get(nats.MsgIdHdr); id != "" {
		return id
	}
	if id := m.Header.Get(queue.HeaderAlertID); id != "" && m.Header.Get(queue.HeaderReplayOf) != "" {
		return id
	}
	return bodyID(m.Data)
}

// bodyID is a JSON object's top-level string "id" that the worker would take as the alert id.
func bodyID(data []byte) string {
	v, err := jsonval.Decode(data)
	if err != nil {
		return ""
	}
	obj, _ := v.(map[string]any)
	id, _ := obj["id"].(string)
	if len(id) > queue.MaxAlertIDBytes {
		return ""
	}
	return id
}

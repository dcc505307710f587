package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/playbook"
	"github.com/riposte-soar/riposte/internal/queue"
)

// cmdValidate checks the playbooks without connecting anywhere: those under --playbooks, or
// the files and directories named as arguments (a CI job over a repository of playbooks).
func cmdValidate(_ context.Context, args []string, env environ, _ io.Reader, stdout, stderr io.Writer) error {
	var s settings
	f := newEnvFlags("validate", env)
	defineCommon(f, &s)
	pos, err := parseWithArgs(f, args, stderr)
	if err != nil {
		return err
	}
	var pbs []*playbook.Playbook
	if len(pos) == 0 {
		pbs, err = loadPlaybooks(s.playbooks)
	} else {
		var paths []string
		if paths, err = playbookPaths(pos); err == nil {
			pbs, err = playbook.LoadFiles(paths, catalogue())
		}
	}
	if err != nil {
		return err
	}
	for _, pb := range pbs {
		fmt.Fprintf(stdout, "ok  %-32s %s (%d steps, on %s)\n", pb.Name, pb.File, len(pb.Steps), strings.Join(pb.On, " "))
	}
	return nil
}

// clientConnect dials the server named by --nats-url (or NATS_URL), with NATS_* credentials.
func clientConnect(url string, env environ, name string) (*nats.Conn, error) {
	auth, err := natsAuth(env)
	if err != nil {
		return nil, err
	}
	return queue.Connect(url, name, auth, zap.NewNop())
}

// cmdPublish publishes one alert, so a fresh machine needs nothing but Go to try the worker.
func cmdPublish(ctx context.Context, args []string, env environ, stdin io.Reader, stdout, stderr io.Writer) error {
	var url, subject, id string
	f := newAlertFlags("publish", env, stderr)
	f.String(&url, "nats-url", "NATS_URL", nats.DefaultURL, "server to publish to")
	f.String(&subject, "subject", "", "soar.alerts.checkpoint.phishing", "subject to publish the alert on (the default is one the shipped phishing playbook takes)")
	f.String(&id, "id", "", "", "Nats-Msg-Id: the alert id; a second publish with the same id is dropped as a duplicate")
	if err := parseFlags(f, args, stderr); err != nil {
		return err
	}
	data, err := readAlertArg(f, stdin)
	if err != nil {
		return err
	}
	nc, err := clientConnect(url, env, "riposte-publish")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	m := nats.NewMsg(subject)
	m.Data = data
	if id != "" {
		m.Header.Set(nats.MsgIdHdr, id)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ack, err := js.PublishMsg(pctx, m)
	if err != nil {
		return fmt.Errorf("publish to %s at %s (is the worker running, and does a stream capture %s?): %w", subject, url, subject, err)
	}
	dup := ""
	if ack.Duplicate {
		dup = " (duplicate: already published with this id, dropped)"
	}
	fmt.Fprintf(stdout, "published to %s: stream %s, sequence %d%s\n", subject, ack.Stream, ack.Sequence, dup)
	return nil
}

// cmdWatch prints outcomes and dead letters as they are stored: `worker outcomes --follow` for
// both streams at once, a line each.
func cmdWatch(ctx context.Context, args []string, env environ, _ io.Reader, stdout, stderr io.Writer) error {
	var (
		tf     toolFlags
		count  int
		asJSON bool
	)
	f := newEnvFlags("watch", env)
	tf.define(f, false, true, true)
	f.Int(&count, "count", "", 0, "exit after this many messages (0: run until interrupted)")
	f.Bool(&asJSON, "json", "", false, "print each message as it is stored (an outcome's JSON), not a readable line")
	if err := parseFlags(f, args, stderr); err != nil {
		return err
	}
	if count < 0 {
		return fmt.Errorf("--count must be 0 (until interrupted) or more, got %d", count)
	}
	nc, js, err := tf.connect(env, "riposte-watch")
	if err != nil {
		return err
	}
	defer nc.Close()
	dlq := tf.cfg.DLQPrefix
	show := func(m *jetstream.RawStreamMsg) bool {
		msg := &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data}
		if asJSON {
			fmt.Fprintln(stdout, describeMessage(msg, dlq))
		} else {
			fmt.Fprintln(stdout, readableMessage(msg, dlq))
		}
		return true
	}
	// followStreams does not open them: a missing one is named here, with its flag.
	for _, st := range []struct{ name, what string }{{tf.cfg.OutcomesStream, "outcomes stream"}, {tf.cfg.DLQStream, "dlq stream"}} {
		if _, _, err := openStream(ctx, js, st.name, st.what); err != nil {
			return err
		}
	}
	feeds := []feed{
		{stream: tf.cfg.OutcomesStream, subjects: []string{tf.cfg.OutcomesPrefix + ".>"}, show: show},
		{stream: tf.cfg.DLQStream, subjects: []string{dlq + ".>"}, show: show},
	}
	return followStreams(ctx, js, feeds, count, func() {
		fmt.Fprintf(stderr, "watching %s.> and %s.> on %s\n", tf.cfg.OutcomesPrefix, dlq, tf.url)
	})
}

// readableMessage renders an outcome or a dead letter as one line for people: what happened to
// which alert, each step, and the first error.
func readableMessage(m *nats.Msg, dlqPrefix string) string {
	if strings.HasPrefix(m.Subject, dlqPrefix+".") {
		return fmt.Sprintf("DEAD     %-28s alert=%s reason=%s: %s", m.Header.Get(queue.HeaderSubject),
			m.Header.Get(queue.HeaderAlertID), m.Header.Get(queue.HeaderDLQReason), m.Header.Get(queue.HeaderDLQDetail))
	}
	var o struct {
		AlertID   string `json:"alert_id"`
		Playbook  string `json:"playbook"`
		Status    string `json:"status"`
		Error     string `json:"error"`
		Simulated bool   `json:"simulated"`
		Steps     []struct {
			ID       string `json:"id"`
			Status   string `json:"status"`
			Attempts int    `json:"attempts"`
			Error    string `json:"error"`
			Replayed bool   `json:"replayed"`
		} `json:"steps"`
	}
	if err := json.Unmarshal(m.Data, &o); err != nil {
		return fmt.Sprintf("%s %s", m.Subject, m.Data)
	}
	playbook := o.Playbook
	if playbook == "" {
		playbook = "(no playbook matched)"
	}
	line := fmt.Sprintf("%-8s %-28s alert=%s", strings.ToUpper(o.Status), playbook, o.AlertID)
	var steps []string
	firstErr := o.Error
	for _, st := range o.Steps {
		mark := ""
		if st.Replayed {
			mark = " (replayed)"
		}
		steps = append(steps, fmt.Sprintf("%s:%s/%d%s", st.ID, st.Status, st.Attempts, mark))
		if firstErr == "" && st.Error != "" {
			firstErr = st.ID + ": " + st.Error
		}
	}
	if len(steps) > 0 {
		line += " steps: " + strings.Join(steps, " ")
	}
	if o.Simulated {
		line += " [simulated]"
	}
	if firstErr != "" {
		line += " error: " + firstErr
	}
	return line
}

// describeMessage renders an outcome as one JSON line, and a dead letter with its reason.
func describeMessage(m *nats.Msg, dlqPrefix string) string {
	if strings.HasPrefix(m.Subject, dlqPrefix+".") {
		return fmt.Sprintf("%s alert=%s reason=%s detail=%q payload=%q", m.Subject,
			m.Header.Get(queue.HeaderAlertID), m.Header.Get(queue.HeaderDLQReason), m.Header.Get(queue.HeaderDLQDetail), m.Data)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, m.Data); err != nil {
		return fmt.Sprintf("%s %s", m.Subject, m.Data)
	}
	return fmt.Sprintf("%s %s", m.Subject, compact.String())
}

// newAlertFlags starts the flags of a command whose one argument is an alert: a file, or - for
// standard input.
func newAlertFlags(name string, env environ, stderr io.Writer) *envFlags {
	f := newEnvFlags(name, env)
	f.takesFile = true
	f.fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: worker %s [flags] FILE|-   (the alert: a JSON object)\n", name)
		f.fs.PrintDefaults()
	}
	return f
}

// readAlertArg reads the alert named by the command's one argument.
func readAlertArg(f *envFlags, stdin io.Reader) ([]byte, error) {
	if f.fs.NArg() != 1 {
		f.fs.Usage()
		return nil, errFlagsShown
	}
	var (
		data []byte
		err  error
	)
	if path := f.fs.Arg(0); path == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read alert: %w", err)
	}
	return data, nil
}

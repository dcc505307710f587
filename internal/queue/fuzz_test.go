package queue

import (
	"context"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// fuzzMsg is a delivery with whatever payload and id the fuzzer makes up.
type fuzzMsg struct {
	data []byte
	hdr  nats.Header
}

func (m *fuzzMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Stream: "SOAR_ALERTS", NumDelivered: 1, Sequence: jetstream.SequencePair{Stream: 7}, Timestamp: time.Unix(1, 0)}, nil
}
func (m *fuzzMsg) Data() []byte                     { return m.data }
func (m *fuzzMsg) Headers() nats.Header             { return m.hdr }
func (m *fuzzMsg) Subject() string                  { return "soar.alerts.fuzz" }
func (m *fuzzMsg) Reply() string                    { return "" }
func (m *fuzzMsg) Ack() error                       { return nil }
func (m *fuzzMsg) DoubleAck(context.Context) error  { return nil }
func (m *fuzzMsg) Nak() error                       { return nil }
func (m *fuzzMsg) NakWithDelay(time.Duration) error { return nil }
func (m *fuzzMsg) InProgress() error                { return nil }
func (m *fuzzMsg) Term() error                      { return nil }
func (m *fuzzMsg) TermWithReason(string) error      { return nil }

// Whatever arrives, decoding never panics, always yields an id within the limit, and either
// an object body or a reason to dead-letter.
func FuzzDecodeAlert(f *testing.F) {
	for _, seed := range []struct{ body, msgID string }{
		{`{"id":"a-1","type":"phishing"}`, ""},
		{`{"id":"a-1"}`, "header-id"},
		{`{"id":12}`, ""},
		{`[1,2]`, ""},
		{`not json`, ""},
		{`{"n":1e400,"big":123456789012345678901234567890}`, ""},
		{`{"id":"` + string(make([]byte, 300)) + `"}`, ""},
		{``, ""},
		{`null`, "x"},
	} {
		f.Add([]byte(seed.body), seed.msgID)
	}
	q := &Queue{cfg: DefaultConfig(), log: zap.NewNop()}
	f.Fuzz(func(t *testing.T, body []byte, msgID string) {
		hdr := nats.Header{}
		if msgID != "" {
			hdr.Set(nats.MsgIdHdr, msgID)
		}
		m := &fuzzMsg{data: body, hdr: hdr}
		meta, _ := m.Metadata()
		a, reason, detail := q.decode(m, meta)
		if a == nil || a.ID == "" {
			t.Fatalf("no alert id for %q", body)
		}
		if len(a.ID) > MaxAlertIDBytes && reason == "" {
			t.Fatalf("an id of %d bytes was accepted", len(a.ID))
		}
		if reason == "" && a.Body == nil {
			t.Fatalf("accepted %q without a body", body)
		}
		if reason != "" && detail == "" {
			t.Fatalf("reason %q without a detail", reason)
		}
		if a.JournalID == "" && reason == "" {
			t.Fatalf("no journal id for an accepted alert")
		}
	})
}

// clip never cuts inside a character and never grows the text.
func FuzzClip(f *testing.F) {
	f.Add("héllo wörld", 5)
	f.Add("", 0)
	f.Fuzz(func(t *testing.T, s string, n int) {
		if n < 4 || n > 1<<20 {
			return
		}
		got := clip(s, n)
		if len(got) > max(n, len(s)) || (len(s) <= n && got != s) {
			t.Fatalf("clip(%q, %d) = %q", s, n, got)
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatalf("clip(%q, %d) = %q cut a character", s, n, got)
		}
	})
}

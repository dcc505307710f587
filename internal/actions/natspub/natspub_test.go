package natspub_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/actions/natspub"
	"github.com/riposte-soar/riposte/internal/queue/queuetest"
)

func bound(t *testing.T) (*natspub.Action, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js := queuetest.JetStream(t)
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "NOTES", Subjects: []string{"notes.>"}}); err != nil {
		t.Fatal(err)
	}
	a := natspub.New()
	if err := a.Bind(nc); err != nil {
		t.Fatal(err)
	}
	return a, nc, js
}

func TestPublishToAStream(t *testing.T) {
	t.Parallel()
	a, _, js := bound(t)
	in := actions.Inputs{
		"subject": "notes.soc", "data": map[string]any{"alert": "a-1", "n": int64(2)},
		"headers": map[string]any{"X-Team": "blue"}, "msgId": "a-1:notify",
	}
	out, err := actions.Invoke(context.Background(), a, in)
	if err != nil {
		t.Fatal(err)
	}
	if out["stream"] != "NOTES" || out["duplicate"] != false || out["subject"] != "notes.soc" {
		t.Errorf("output = %v", out)
	}
	again, err := actions.Invoke(context.Background(), a, in)
	if err != nil || again["duplicate"] != true {
		t.Errorf("second publish with the same msgId: %v, %v; want a duplicate", again, err)
	}
	str, _ := js.Stream(context.Background(), "NOTES")
	m, err := str.GetLastMsgForSubject(context.Background(), "notes.soc")
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	if err := json.Unmarshal(m.Data, &body); err != nil || body["alert"] != "a-1" || body["n"] != 2.0 {
		t.Errorf("stored %s (%v)", m.Data, err)
	}
	if m.Header.Get("X-Team") != "blue" || m.Header.Get("Content-Type") != "application/json" || m.Header.Get(nats.MsgIdHdr) != "a-1:notify" {
		t.Errorf("headers = %v", m.Header)
	}
}

func TestPublishWithoutAStream(t *testing.T) {
	t.Parallel()
	a, nc, _ := bound(t)
	sub, err := nc.SubscribeSync("chat.soc")
	if err != nil {
		t.Fatal(err)
	}
	out, err := actions.Invoke(context.Background(), a, actions.Inputs{"subject": "chat.soc", "data": "phish quarantined"})
	if err != nil {
		t.Fatal(err)
	}
	if _, has := out["stream"]; has || out["subject"] != "chat.soc" {
		t.Errorf("output = %v, want a plain publish", out)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil || string(m.Data) != "phish quarantined" {
		t.Errorf("received %v, %v", m, err)
	}
}

func TestBadInputsArePermanent(t *testing.T) {
	t.Parallel()
	a, _, _ := bound(t)
	for name, in := range map[string]actions.Inputs{
		"no subject":       {"data": "x"},
		"wildcard":         {"subject": "notes.*"},
		"empty token":      {"subject": "notes..x"},
		"header not text":  {"subject": "notes.x", "headers": map[string]any{"X-N": int64(1)}},
		"header two lines": {"subject": "notes.x", "headers": map[string]any{"X-N": "a\r\nb"}},
		"unknown input":    {"subject": "notes.x", "body": "x"},
	} {
		_, err := actions.Invoke(context.Background(), a, in)
		if err == nil || !actions.IsPermanent(err) || !strings.Contains(err.Error(), "nats.publish") {
			t.Errorf("%s: err = %v, want a permanent error naming the action", name, err)
		}
	}
}

func TestUnboundIsAnError(t *testing.T) {
	t.Parallel()
	if _, err := actions.Invoke(context.Background(), natspub.New(), actions.Inputs{"subject": "x.y"}); err == nil {
		t.Error("an unbound action published")
	}
}

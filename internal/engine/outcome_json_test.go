package engine

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func TestEncodeOutcomeIsMarshal(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 22, 12, 0, 0, 123_000_000, time.UTC)
	for _, o := range []Outcome{
		{},
		{AlertID: "a-1", Subject: "soar.alerts.x", Status: StatusUnmatched, StartedAt: at, FinishedAt: at, Worker: "w", Deliveries: 1, Steps: []StepOutcome{}},
		{AlertID: "<&>\"\\\n\t\b\f\r\x00\x1f\x7f", Playbook: "p", Status: StatusFailed, StartedAt: at, FinishedAt: at.Add(time.Second),
			Deliveries: 3, FailedDeliveries: 2, Error: "when: \u2028\u2029 é \xff\xfe ok", Simulated: true, ReplayOf: "42"},
		{AlertID: "a", StartedAt: at.In(time.FixedZone("x", 3600)), FinishedAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("y", -5400)),
			Steps: []StepOutcome{{ID: "s", Action: "checkpoint.quarantine_entity", Status: StatusSucceeded, Attempts: 1, DurationMS: 51,
				Output: map[string]any{"tasks": []any{map[string]any{"taskId": "1<2"}}}, Replayed: true,
				Approval: &ApprovalInfo{Decision: "approve", By: []string{"ann"}, DecidedAt: at}}}},
	} {
		want, werr := json.Marshal(o)
		got, gerr := encodeOutcome(o)
		if werr != nil || gerr != nil || !bytes.Equal(got, want) {
			t.Errorf("encodeOutcome = %s, %v\njson.Marshal  = %s, %v", got, gerr, want, werr)
		}
	}
	// A time JSON cannot carry is refused, as json.Marshal refuses it.
	bad := Outcome{StartedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := encodeOutcome(bad); err == nil {
		t.Error("encodeOutcome of the year 10000: no error")
	}
	if _, err := encodeOutcome(Outcome{FinishedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("z", 24*3600))}); err == nil {
		t.Error("encodeOutcome of a 24-hour zone offset: no error")
	}
}

// Every field of an outcome, its steps' and their approvals' included, is encoded: one set on
// them all, by reflection, so that a field added later and left out of encodeOutcome fails here.
func TestEncodeOutcomeEncodesEveryField(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	var fill func(v reflect.Value)
	fill = func(v reflect.Value) {
		switch {
		case v.Type() == reflect.TypeOf(at):
			v.Set(reflect.ValueOf(at))
		case v.Kind() == reflect.Struct:
			for i := range v.NumField() {
				fill(v.Field(i))
			}
		case v.Kind() == reflect.Pointer:
			v.Set(reflect.New(v.Type().Elem()))
			fill(v.Elem())
		case v.Kind() == reflect.Slice:
			v.Set(reflect.MakeSlice(v.Type(), 1, 1))
			fill(v.Index(0))
		case v.Kind() == reflect.Map:
			v.Set(reflect.ValueOf(map[string]any{"k": "v"}))
		case v.Kind() == reflect.String:
			v.SetString("x")
		case v.Kind() == reflect.Interface:
			v.Set(reflect.ValueOf("x"))
		case v.Kind() == reflect.Bool:
			v.SetBool(true)
		case v.CanInt():
			v.SetInt(7)
		default:
			t.Fatalf("no value to fill a %s with", v.Type())
		}
	}
	var o Outcome
	fill(reflect.ValueOf(&o).Elem())
	want, werr := json.Marshal(o)
	got, gerr := encodeOutcome(o)
	if werr != nil || gerr != nil || !bytes.Equal(got, want) {
		t.Errorf("encodeOutcome = %s, %v\njson.Marshal  = %s, %v", got, gerr, want, werr)
	}
}

func FuzzEncodeOutcome(f *testing.F) {
	f.Add("a-1", "soar.alerts.x", "p", "<&>\u2028\xff", int64(1764590000123000000), 1, 0, false)
	f.Add("", "", "", "", int64(-62135596800000000), 0, -1, true)
	f.Fuzz(func(t *testing.T, id, subject, playbook, msg string, nanos int64, deliveries, failed int, simulated bool) {
		at := time.Unix(0, nanos).UTC()
		o := Outcome{AlertID: id, Subject: subject, Playbook: playbook, Status: StatusSucceeded, StartedAt: at, FinishedAt: at,
			Worker: msg, Deliveries: deliveries, FailedDeliveries: failed, Steps: []StepOutcome{}, Error: msg, Simulated: simulated, ReplayOf: id}
		want, werr := json.Marshal(o)
		got, gerr := encodeOutcome(o)
		if (werr == nil) != (gerr == nil) || !bytes.Equal(got, want) {
			t.Fatalf("encodeOutcome = %s, %v\njson.Marshal  = %s, %v", got, gerr, want, werr)
		}
	})
}

// BenchmarkEncodeUnmatched is the handler's encoding of the outcome most alerts end with.
func BenchmarkEncodeUnmatched(b *testing.B) {
	at := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	o := Outcome{AlertID: "alert-123456", Subject: "soar.alerts.checkpoint.phishing", Status: StatusUnmatched,
		StartedAt: at, FinishedAt: at, Worker: "host-1-4242", Deliveries: 1, Steps: []StepOutcome{}}
	for _, enc := range []struct {
		name string
		fn   func(Outcome) ([]byte, error)
	}{{"encodeOutcome", encodeOutcome}, {"json.Marshal", func(o Outcome) ([]byte, error) { return json.Marshal(o) }}} {
		b.Run(enc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := enc.fn(o); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

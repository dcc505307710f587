package engine

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// encodeOutcome is json.Marshal(o), byte for byte, without reflection for the outcome's own
// fields: every alert ends with at least one outcome, and most (unmatched ones) have no steps,
// whose encoding is still encoding/json's. TestEncodeOutcomeIsMarshal and FuzzEncodeOutcome hold
// it to json.Marshal.
func encodeOutcome(o Outcome) ([]byte, error) {
	b := make([]byte, 0, 256)
	b = append(b, `{"alert_id":`...)
	b = appendJSONString(b, o.AlertID)
	b = append(b, `,"subject":`...)
	b = appendJSONString(b, o.Subject)
	b = append(b, `,"playbook":`...)
	b = appendJSONString(b, o.Playbook)
	b = append(b, `,"status":`...)
	b = appendJSONString(b, o.Status)
	var ok bool
	b = append(b, `,"started_at":`...)
	if b, ok = appendJSONTime(b, o.StartedAt); !ok {
		return json.Marshal(o) // for its error
	}
	b = append(b, `,"finished_at":`...)
	if b, ok = appendJSONTime(b, o.FinishedAt); !ok {
		return json.Marshal(o)
	}
	b = append(b, `,"worker":`...)
	b = appendJSONString(b, o.Worker)
	b = append(b, `,"deliveries":`...)
	b = strconv.AppendInt(b, int64(o.Deliveries), 10)
	if o.FailedDeliveries != 0 {
		b = append(b, `,"failed_deliveries":`...)
		b = strconv.AppendInt(b, int64(o.FailedDeliveries), 10)
	}
	b = append(b, `,"steps":`...)
	switch {
	case o.Steps == nil:
		b = append(b, "null"...)
	case len(o.Steps) == 0:
		b = append(b, "[]"...)
	default:
		steps, err := json.Marshal(o.Steps)
		if err != nil {
			return nil, err
		}
		b = append(b, steps...)
	}
	if o.Error != "" {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, o.Error)
	}
	if o.Simulated {
		b = append(b, `,"simulated":true`...)
	}
	if o.ReplayOf != "" {
		b = append(b, `,"replay_of":`...)
		b = appendJSONString(b, o.ReplayOf)
	}
	return append(b, '}'), nil
}

// appendJSONTime is time.Time's MarshalJSON; false for a time it refuses. Outcomes' times are
// UTC, formatted here; any other is left to MarshalJSON, with its checks of the zone.
func appendJSONTime(b []byte, t time.Time) ([]byte, bool) {
	if y := t.Year(); t.Location() != time.UTC || y < 0 || y > 9999 {
		j, err := t.MarshalJSON()
		return append(b, j...), err == nil
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), true
}

// appendJSONString quotes s as json.Marshal does: <, > and & escaped for HTML, invalid UTF-8 as
// U+FFFD, U+2028 and U+2029 escaped for JavaScript.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, `\b`...)
			case '\f':
				b = append(b, `\f`...)
			case '\n':
				b = append(b, `\n`...)
			case '\r':
				b = append(b, `\r`...)
			case '\t':
				b = append(b, `\t`...)
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

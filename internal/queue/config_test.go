package queue

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("the default configuration is invalid: %v", err)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("the zero configuration (all defaults) is invalid: %v", err)
	}
	tests := []struct {
		name   string
		adjust func(*Config)
		want   []string // each must appear in the error
	}{
		{"wildcard outcomes prefix", func(c *Config) { c.OutcomesPrefix = "soar.outcomes.*" }, []string{`outcomes prefix "soar.outcomes.*"`}},
		{"full wildcard dlq prefix", func(c *Config) { c.DLQPrefix = "soar.>" }, []string{`dead-letter prefix "soar.>"`}},
		{"leading dot", func(c *Config) { c.OutcomesPrefix = ".soar" }, []string{`outcomes prefix ".soar"`}},
		{"trailing dot", func(c *Config) { c.DLQPrefix = "soar.dlq." }, []string{`dead-letter prefix "soar.dlq."`}},
		{"space in prefix", func(c *Config) { c.OutcomesPrefix = "soar outcomes" }, []string{`outcomes prefix "soar outcomes"`}},
		{"dot in stream", func(c *Config) { c.AlertsStream = "SOAR.ALERTS" }, []string{`alerts stream name "SOAR.ALERTS"`}},
		{"wildcard in stream", func(c *Config) { c.OutcomesStream = "OUT*" }, []string{`outcomes stream name "OUT*"`}},
		{"gt in dlq stream", func(c *Config) { c.DLQStream = "D>" }, []string{`dead-letter stream name "D>"`}},
		{"space in consumer", func(c *Config) { c.Consumer = "my worker" }, []string{`consumer name "my worker"`}},
		{"tab in bucket", func(c *Config) { c.JournalBucket = "a\tb" }, []string{`journal bucket name "a\tb"`}},
		{"slash in bucket", func(c *Config) { c.JournalBucket = "steps/v1" }, []string{`journal bucket name "steps/v1"`}},
		{"dot in approvals bucket", func(c *Config) { c.ApprovalsBucket = "gates.v1" }, []string{`approvals bucket name "gates.v1"`}},
		{"wildcard in approvals prefix", func(c *Config) { c.ApprovalsPrefix = "soar.*" }, []string{`approvals prefix "soar.*"`}},
		{"dot in approvals stream", func(c *Config) { c.ApprovalsStream = "SOAR.APPROVALS" }, []string{`approvals stream name "SOAR.APPROVALS"`}},
		{"approvals on the outcomes' prefix", func(c *Config) { c.ApprovalsPrefix = "soar.outcomes" }, []string{`outcomes and approvals prefixes are both "soar.outcomes"`}},
		{"empty token in prefix", func(c *Config) { c.OutcomesPrefix = "soar..outcomes" }, []string{`outcomes prefix "soar..outcomes"`}},
		{"newline in stream", func(c *Config) { c.AlertsStream = "SOAR\nALERTS" }, []string{`alerts stream name "SOAR\nALERTS"`}},
		{"every problem at once", func(c *Config) {
			c.OutcomesPrefix, c.AlertsStream, c.Consumer = "x.>", "a.b", "c.d"
		}, []string{`outcomes prefix "x.>"`, `alerts stream name "a.b"`, `consumer name "c.d"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := DefaultConfig()
			tt.adjust(&c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate accepted %+v", c)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %s", err, w)
				}
			}
			if _, nerr := New(nil, c, nil); nerr == nil {
				t.Errorf("New accepted a configuration Validate rejects")
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c := Config{MaxInFlight: 5}.withDefaults()
	if c.MaxAckPending != 20000 {
		t.Errorf("max ack pending = %d, want 20000, room for alerts parked behind an outage", c.MaxAckPending)
	}
	if c.AlertsStream != "SOAR_ALERTS" || c.Consumer != "riposte" || c.JournalBucket != "riposte_steps" {
		t.Errorf("names not defaulted: %+v", c)
	}
	if got := (Config{MaxInFlight: 2000}).withDefaults().MaxAckPending; got != 2000*16 {
		t.Errorf("max ack pending for 2000 in flight = %d, want max in flight × 16 = 32000", got)
	}
	if got := (Config{MaxInFlight: 5, MaxAckPending: 7}).withDefaults().MaxAckPending; got != 7 {
		t.Errorf("a configured max ack pending became %d, want 7", got)
	}
	if got, want := DefaultConfig().OutcomeSubject("p"), "soar.outcomes.p"; got != want {
		t.Errorf("OutcomeSubject = %q, want %q", got, want)
	}
	if got, want := DefaultConfig().DLQSubject("invalid"), "soar.dlq.invalid"; got != want {
		t.Errorf("DLQSubject = %q, want %q", got, want)
	}
}

func TestRetryDelayDoublesAndCaps(t *testing.T) {
	t.Parallel()
	c := Config{RetryDelay: 10 * time.Second, MaxRetryDelay: 5 * time.Minute}
	for _, tt := range []struct {
		delivered uint64
		want      time.Duration
	}{
		{0, 10 * time.Second},
		{1, 10 * time.Second},
		{2, 20 * time.Second},
		{3, 40 * time.Second},
		{4, 80 * time.Second},
		{5, 160 * time.Second},
		{6, 5 * time.Minute}, // 320s, capped
		{7, 5 * time.Minute},
		{1000, 5 * time.Minute},
	} {
		if got := c.retryDelay(tt.delivered); got != tt.want {
			t.Errorf("retryDelay(%d) = %s, want %s", tt.delivered, got, tt.want)
		}
	}
	capped := Config{RetryDelay: time.Minute, MaxRetryDelay: 10 * time.Second}
	if got := capped.retryDelay(1); got != 10*time.Second {
		t.Errorf("retryDelay above its cap = %s, want the cap 10s", got)
	}
}

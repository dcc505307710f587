package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFlagsAndEnvironment(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		check   func(t *testing.T, s settings)
		wantErr string
	}{
		{name: "defaults", check: func(t *testing.T, s settings) {
			if s.playbooks != "./playbooks" || s.httpAddr != ":9464" || s.dataDir != "./data" || s.maxInFlight != 64 ||
				s.queue.Consumer != "riposte" || s.logLevel != "info" || s.logFormat != "json" || s.simulate {
				t.Errorf("defaults = %+v", s)
			}
			if s.queue.MaxInFlight != 64 || strings.Join(s.queue.AlertsSubjects, ",") != "soar.alerts.>" {
				t.Errorf("queue defaults = %+v", s.queue)
			}
		}},
		{name: "environment", env: map[string]string{
			"RIPOSTE_PLAYBOOKS": "/etc/riposte", "RIPOSTE_MAX_IN_FLIGHT": "8", "RIPOSTE_SIMULATE": "true",
			"RIPOSTE_CONSUMER": "blue", "RIPOSTE_ACK_WAIT": "1m", "RIPOSTE_ALERTS_SUBJECTS": "a.>, b.*",
			"NATS_URL": "nats://n1:4222", "NATS_USER": "u", "NATS_PASSWORD": "p",
		}, check: func(t *testing.T, s settings) {
			if s.playbooks != "/etc/riposte" || s.maxInFlight != 8 || !s.simulate || s.queue.Consumer != "blue" || s.queue.AckWait != time.Minute {
				t.Errorf("settings = %+v", s)
			}
			if strings.Join(s.queue.AlertsSubjects, "|") != "a.>|b.*" {
				t.Errorf("subjects = %q", s.queue.AlertsSubjects)
			}
			if s.natsURL != "nats://n1:4222" || s.natsAuth.User != "u" || s.natsAuth.Password != "p" {
				t.Errorf("nats = %q %+v", s.natsURL, s.natsAuth)
			}
		}},
		{name: "a flag beats its variable", env: map[string]string{"RIPOSTE_MAX_IN_FLIGHT": "8"}, args: []string{"--max-in-flight", "3"},
			check: func(t *testing.T, s settings) {
				if s.maxInFlight != 3 {
					t.Errorf("max in flight = %d, want 3", s.maxInFlight)
				}
			}},
		{name: "empty RIPOSTE_HTTP_ADDR disables the endpoints", env: map[string]string{"RIPOSTE_HTTP_ADDR": ""},
			check: func(t *testing.T, s settings) {
				if s.httpAddr != "" {
					t.Errorf("http addr = %q, want empty", s.httpAddr)
				}
			}},
		{name: "empty variable elsewhere keeps the default", env: map[string]string{"RIPOSTE_PLAYBOOKS": ""},
			check: func(t *testing.T, s settings) {
				if s.playbooks != "./playbooks" {
					t.Errorf("playbooks = %q", s.playbooks)
				}
			}},
		{name: "bad number", env: map[string]string{"RIPOSTE_MAX_DELIVER": "five"}, wantErr: `RIPOSTE_MAX_DELIVER="five": not a whole number`},
		{name: "bad duration", env: map[string]string{"RIPOSTE_ACK_WAIT": "30"}, wantErr: `RIPOSTE_ACK_WAIT="30": not a duration`},
		{name: "bad bool", env: map[string]string{"RIPOSTE_SIMULATE": "yes please"}, wantErr: `RIPOSTE_SIMULATE="yes please": not true or false`},
		{name: "on means true", env: map[string]string{"RIPOSTE_SIMULATE": "on"}, check: func(t *testing.T, s settings) {
			if !s.simulate {
				t.Error("RIPOSTE_SIMULATE=on did not turn simulation on")
			}
		}},
		{name: "off means false", env: map[string]string{"RIPOSTE_SIMULATE": "OFF"}, check: func(t *testing.T, s settings) {
			if s.simulate {
				t.Error("RIPOSTE_SIMULATE=OFF turned simulation on")
			}
		}},
		{name: "nkey seed from a file", env: map[string]string{"NATS_NKEY_SEED_FILE": "/nonexistent/seed"}, wantErr: "read NATS_NKEY_SEED_FILE"},
		{name: "zero in flight", args: []string{"--max-in-flight", "0"}, wantErr: "--max-in-flight must be at least 1"},
		{name: "bad approvals bucket", env: map[string]string{"RIPOSTE_APPROVALS_BUCKET": "gates v1"}, wantErr: `approvals bucket name "gates v1"`},
		{name: "pprof without a listener", args: []string{"--pprof"}, env: map[string]string{"RIPOSTE_HTTP_ADDR": ""}, wantErr: "--pprof serves on --http-addr, which is empty"},
		{name: "secret file missing", env: map[string]string{"NATS_PASSWORD_FILE": "/nonexistent/pw"}, wantErr: "read NATS_PASSWORD_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := mapEnv(tt.env)
			var s settings
			f := newEnvFlags("run", env)
			defineCommon(f, &s)
			defineWorker(f, &s)
			err := parseFlags(f, tt.args, nil)
			if err == nil {
				err = s.finish(env)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, s)
		})
	}
}

func TestSecretsFromFiles(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, []byte("from-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := secretReader(mapEnv(map[string]string{"HEC_ACCESS_KEY_FILE": path, "HEC_CLIENT_ID": "direct", "HEC_CLIENT_ID_FILE": path}))
	for name, want := range map[string]string{"HEC_ACCESS_KEY": "from-a-file", "HEC_CLIENT_ID": "direct", "GZ_API_KEY": ""} {
		got, err := secret(name)
		if err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
}

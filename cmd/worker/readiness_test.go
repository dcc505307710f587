package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/riposte-soar/riposte/internal/queue"
)

// A worker started before its NATS server waits for it instead of exiting, reports not ready
// meanwhile, and is ready once it pulls alerts.
func TestRunWaitsForNATSAndReportsReadiness(t *testing.T) {
	t.Parallel()
	natsAddr, httpAddr := freeAddr(t), freeAddr(t)
	fakes := startFakeVendors(t)
	env := fakes.with(map[string]string{
		"NATS_URL": "nats://" + natsAddr, "RIPOSTE_PLAYBOOKS": shippedPlaybooks, "RIPOSTE_HTTP_ADDR": httpAddr,
	})
	ctx, cancel := context.WithCancel(context.Background())
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- dispatch(ctx, []string{"run"}, mapEnv(env), nil, io.Discard, &stderr) }()

	readyz := func() (int, string) {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitStatus := func(want int) string {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, body := readyz()
			if code == want {
				return body
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz = %d %q, want %d", code, body, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if body := waitStatus(http.StatusServiceUnavailable); !strings.Contains(body, "starting") {
		t.Errorf("/readyz before NATS is up: %q", body)
	}
	emb, err := queue.StartEmbedded(queue.EmbeddedConfig{Listen: natsAddr, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	waitStatus(http.StatusOK)

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the worker did not stop")
	}
	if !strings.Contains(stderr.String(), "NATS is not reachable yet") {
		t.Errorf("the wait for NATS was not logged:\n%s", stderr.String())
	}
}

// Stopped while still waiting for NATS, the worker exits cleanly.
func TestRunStoppedWhileWaitingForNATS(t *testing.T) {
	t.Parallel()
	fakes := startFakeVendors(t)
	env := fakes.with(map[string]string{"NATS_URL": "nats://" + freeAddr(t), "RIPOSTE_PLAYBOOKS": shippedPlaybooks, "RIPOSTE_HTTP_ADDR": ""})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var stderr bytes.Buffer
	if code := dispatch(ctx, []string{"run"}, mapEnv(env), nil, io.Discard, &stderr); code != 0 {
		t.Errorf("exit code %d\n%s", code, stderr.String())
	}
}

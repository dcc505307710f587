package queue

import (
	"strings"
	"testing"

	"go.uber.org/zap"
)

func TestConnectErrorHidesCredentials(t *testing.T) {
	t.Parallel()
	// Port 1 on loopback refuses at once.
	_, err := Connect("nats://alice:hunter2@127.0.0.1:1,nats://s3cr3t-token@127.0.0.1:1", "test", Auth{}, zap.NewNop())
	if err == nil {
		t.Fatal("connected to a closed port")
	}
	for _, secret := range []string{"hunter2", "s3cr3t-token"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q contains %q", err, secret)
		}
	}
	if !strings.Contains(err.Error(), "alice") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("error %q should still say where it tried", err)
	}
}

func TestConnectRejectsHalfAMutualTLSPair(t *testing.T) {
	t.Parallel()
	_, err := Connect("nats://127.0.0.1:1", "test", Auth{CertFile: "cert.pem"}, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), "NATS_CERT and NATS_KEY") {
		t.Errorf("error = %v", err)
	}
}

package queue

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
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

// NATS_NKEY_SEED may hold the seed itself (as docs/configuration.md's secrets do, or via its _FILE form)
// or, as the nats tools take it, the path of a seed file; both authenticate.
func TestConnectWithNKey(t *testing.T) {
	t.Parallel()
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(5 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(srv.Shutdown)
	path := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(path, append(seed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()

	for name, tc := range map[string]struct {
		seed   string
		wantOK bool
	}{
		"seed":        {string(seed), true},
		"seed file":   {path, true},
		"wrong seed":  {string(otherSeed), false},
		"broken seed": {"SUAAAA", false},
		"no file":     {filepath.Join(t.TempDir(), "missing.nk"), false},
	} {
		nc, err := Connect(srv.ClientURL(), "test", Auth{NKeySeed: tc.seed}, zap.NewNop())
		if nc != nil {
			nc.Close()
		}
		if (err == nil) != tc.wantOK {
			t.Errorf("%s: err = %v, want ok=%v", name, err, tc.wantOK)
		}
		if err != nil && strings.Contains(err.Error(), string(seed)) {
			t.Errorf("%s: error leaks the seed", name)
		}
	}
}

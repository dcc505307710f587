package queue

import (
	"errors"
	"fmt"
	"io/fs"
	neturl "net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"go.uber.org/zap"
)

// Auth carries the NATS credentials a worker may be given; at most one method is used, in the
// order creds file, nkey seed, token, user/password. TLS applies alongside any of them.
type Auth struct {
	CredsFile string
	NKeySeed  string // a user seed ("SU…"), or the path of a file holding one
	Token     string
	User      string
	Password  string
	CAFile    string
	CertFile  string
	KeyFile   string
}

// Connect dials NATS with reconnects that never give up: a worker outlives a server restart.
func Connect(url, name string, auth Auth, log *zap.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", zap.String("url", c.ConnectedUrlRedacted())) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { log.Warn("nats async error", zap.Error(err)) }),
	}
	switch {
	case auth.CredsFile != "":
		opts = append(opts, nats.UserCredentials(auth.CredsFile))
	case auth.NKeySeed != "":
		opt, err := nkeyOption(auth.NKeySeed)
		if err != nil {
			return nil, err
		}
		opts = append(opts, opt)
	case auth.Token != "":
		opts = append(opts, nats.Token(auth.Token))
	case auth.User != "":
		opts = append(opts, nats.UserInfo(auth.User, auth.Password))
	}
	if auth.CAFile != "" {
		opts = append(opts, nats.RootCAs(auth.CAFile))
	}
	if auth.CertFile != "" || auth.KeyFile != "" {
		if auth.CertFile == "" || auth.KeyFile == "" {
			return nil, fmt.Errorf("NATS_CERT and NATS_KEY go together: set both or neither")
		}
		opts = append(opts, nats.ClientCert(auth.CertFile, auth.KeyFile))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", redactURLs(url), err)
	}
	return nc, nil
}

// redactURLs hides the passwords of a comma-separated server list, for messages and logs.
func redactURLs(servers string) string {
	parts := strings.Split(servers, ",")
	for i, p := range parts {
		u, err := neturl.Parse(strings.TrimSpace(p))
		if err != nil || u.User == nil {
			continue
		}
		if _, has := u.User.Password(); has {
			u.User = neturl.UserPassword(u.User.Username(), "xxxxx")
		} else {
			u.User = neturl.User("xxxxx") // a bare token
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}

// nkeyOption signs the server's nonce with a user nkey given as the seed itself or, as the nats
// tools take it, as a path to a seed file. No error repeats the value: a seed of another kind or
// a mangled one would otherwise come back as "open S…: no such file or directory".
func nkeyOption(seedOrPath string) (nats.Option, error) {
	v := strings.TrimSpace(seedOrPath)
	kp, err := nkeys.FromSeed([]byte(v))
	if err != nil && strings.HasPrefix(v, "SU") {
		return nil, fmt.Errorf("NATS nkey seed: not a valid user seed: %w", err)
	}
	if err == nil {
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("NATS nkey seed: %w", err)
		}
		if !nkeys.IsValidPublicUserKey(pub) {
			return nil, fmt.Errorf("NATS nkey seed: an nkey seed, but not a user's (SU…)")
		}
		return nats.Nkey(pub, kp.Sign), nil
	}
	opt, err := nats.NkeyOptionFromSeed(v)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // leave the "path" out: it may be a mistyped seed
		}
		return nil, fmt.Errorf("NATS nkey seed: neither a user seed nor a readable seed file: %w", err)
	}
	return opt, nil
}

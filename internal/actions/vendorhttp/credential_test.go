package vendorhttp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riposte-soar/riposte/internal/actions"
)

func TestCredentialCacheSharesOneFetch(t *testing.T) {
	t.Parallel()
	var fetches atomic.Int32
	release := make(chan struct{})
	cache := NewCredentialCache("token", "check the key", func(ctx context.Context) (Credential, error) {
		n := fetches.Add(1)
		<-release
		return Credential{Value: fmt.Sprintf("tok-%d", n)}, nil
	}, nil)
	var wg sync.WaitGroup
	got := make(chan string, 32)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := cache.Get(context.Background(), "")
			if err != nil {
				t.Error(err)
			}
			got <- v
		}()
	}
	// Let the callers pile up behind the first fetch before it answers.
	for fetches.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	close(got)
	for v := range got {
		if v != "tok-1" {
			t.Errorf("caller got %q, want tok-1", v)
		}
	}
	if n := fetches.Load(); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
}

func TestCredentialCacheRenewsWhenDue(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	n := 0
	cache := NewCredentialCache("token", "", func(context.Context) (Credential, error) {
		n++
		return Credential{Value: fmt.Sprintf("tok-%d", n), RenewAt: clock().Add(time.Minute)}, nil
	}, clock)
	ctx := context.Background()
	first, _ := cache.Get(ctx, "")
	again, _ := cache.Get(ctx, "")
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	renewed, _ := cache.Get(ctx, "")
	if first != "tok-1" || again != "tok-1" || renewed != "tok-2" {
		t.Errorf("got %q, %q, %q; want tok-1, tok-1, tok-2", first, again, renewed)
	}
}

// A caller that gives up while fetching leaves the others to fetch under their own context,
// instead of handing them its cancellation.
func TestCredentialCacheAbandonedFetchDoesNotPoison(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	started := make(chan struct{})
	cache := NewCredentialCache("token", "", func(ctx context.Context) (Credential, error) {
		if calls.Add(1) == 1 {
			close(started)
			<-ctx.Done()
			return Credential{}, ctx.Err()
		}
		return Credential{Value: "good"}, nil
	}, nil)
	impatient, cancel := context.WithCancel(context.Background())
	firstDone := make(chan error, 1)
	go func() {
		_, err := cache.Get(impatient, "")
		firstDone <- err
	}()
	<-started
	secondDone := make(chan string, 1)
	go func() {
		v, err := cache.Get(context.Background(), "")
		if err != nil {
			t.Error(err)
		}
		secondDone <- v
	}()
	cancel()
	if err := <-firstDone; !errors.Is(err, context.Canceled) {
		t.Errorf("impatient caller: %v, want context.Canceled", err)
	}
	if v := <-secondDone; v != "good" {
		t.Errorf("patient caller got %q, want good", v)
	}
}

func TestWithCredentialRenewsOnceOn401(t *testing.T) {
	t.Parallel()
	unauthorized := func() error {
		return &actions.UnauthorizedError{Err: &actions.HTTPStatusError{Op: "call", Status: 401}}
	}
	cases := []struct {
		name      string
		refuse    int // calls answered 401 before success
		wantCalls int
		wantErr   string
	}{
		{"accepted", 0, 1, ""},
		{"refused once then accepted", 1, 2, ""},
		{"refused even fresh", 5, 2, "a freshly issued session was refused too; check the password"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fetches := 0
			cache := NewCredentialCache("session", "check the password", func(context.Context) (Credential, error) {
				fetches++
				return Credential{Value: fmt.Sprintf("s%d", fetches)}, nil
			}, nil)
			var seen []string
			_, err := WithCredential(context.Background(), cache, "close event", func(_ context.Context, cred string) (int, error) {
				seen = append(seen, cred)
				if len(seen) <= tc.refuse {
					return 0, unauthorized()
				}
				return 1, nil
			})
			if len(seen) != tc.wantCalls {
				t.Errorf("calls %v, want %d", seen, tc.wantCalls)
			}
			if len(seen) == 2 && seen[0] == seen[1] {
				t.Errorf("the refused credential %q was used again", seen[0])
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("error %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !actions.IsPermanent(err)):
				t.Errorf("error %v, want permanent containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestWithCredentialNamesTheCallOnFetchFailure(t *testing.T) {
	t.Parallel()
	cache := NewCredentialCache("session", "", func(context.Context) (Credential, error) {
		return Credential{}, errors.New("logon: HTTP 503")
	}, nil)
	_, err := WithCredential(context.Background(), cache, "close event ev1", func(context.Context, string) (int, error) {
		t.Error("called without a credential")
		return 0, nil
	})
	if err == nil || err.Error() != "close event ev1: logon: HTTP 503" {
		t.Errorf("error %v", err)
	}
}

func TestRedactor(t *testing.T) {
	t.Parallel()
	cache := NewCredentialCache("token", "", func(context.Context) (Credential, error) {
		return Credential{Value: "tok-live-123"}, nil
	}, nil)
	if _, err := cache.Get(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	_, _ = cache.Get(context.Background(), "tok-old-999") // remembered as refused
	r := NewRedactor([]string{"key-abc", "", "key-abc-longer"}, cache.Secrets)
	got := r.Scrub("echo key-abc-longer key-abc tok-live-123 tok-old-999 fine")
	if want := "echo [redacted] [redacted] [redacted] [redacted] fine"; got != want {
		t.Errorf("Scrub = %q, want %q", got, want)
	}
	var nilR *Redactor
	if nilR.Scrub("x") != "x" {
		t.Error("a nil redactor changed text")
	}
}

// A refused credential is not handed to the next caller when its renewal failed.
func TestRefusedCredentialIsNotReusedAfterAFailedRenewal(t *testing.T) {
	t.Parallel()
	fetches := 0
	cache := NewCredentialCache("session", "", func(context.Context) (Credential, error) {
		fetches++
		if fetches == 2 {
			return Credential{}, errors.New("logon: HTTP 503")
		}
		return Credential{Value: fmt.Sprintf("s%d", fetches)}, nil
	}, nil)
	ctx := context.Background()
	first, _ := cache.Get(ctx, "")
	if _, err := cache.Get(ctx, first); err == nil {
		t.Fatal("the failed renewal reported no error")
	}
	next, err := cache.Get(ctx, "")
	if err != nil || next == first {
		t.Errorf("next caller got %q, %v; want a fresh credential, not the refused %q", next, err, first)
	}
}

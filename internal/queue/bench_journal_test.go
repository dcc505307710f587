package queue_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/queue"
	"github.com/riposte-soar/riposte/internal/queue/queuetest"
)

func benchJournal(b *testing.B) *queue.Journal {
	b.Helper()
	nc := queuetest.Connect(b, queuetest.StartJetStream(b))
	q, err := queue.New(nc, queue.DefaultConfig(), zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	j, err := q.Ensure(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return j
}

// BenchmarkJournalPut is one step record of about 200 bytes on the file-backed journal bucket.
func BenchmarkJournalPut(b *testing.B) {
	j := benchJournal(b)
	rec := []byte(`{"output":{"tasks":[{"entityId":"e-1","taskId":"123445311234"}]},"attempts":1,"duration_ms":52,"note":"` + fmt.Sprintf("%0100d", 0) + `"}`)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := j.Put(ctx, "k"+strconv.Itoa(i), rec); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkStepClaim is the claim every step takes and lets go (create, renewal, delete).
func BenchmarkStepClaim(b *testing.B) {
	leases := benchJournal(b).Leases("bench", 30*time.Second, zap.NewNop())
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_, release, wait, err := leases.Lock(ctx, "step\x00"+strconv.Itoa(i))
		if err != nil || wait > 0 {
			b.Fatalf("lock: %v, wait %s", err, wait)
		}
		release()
		i++
	}
}

package jobwire

// Admin against the real broker of TestMain: dead letters grouped, counted by a dry run
// and redriven; pause and resume seen by Lease; queue counts; paging; error mapping.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	jobwirev1 "github.com/jobwire/jobwire/clients/go/gen/jobwire/v1"
)

func adminTest(t *testing.T) (*Client, *Admin) {
	t.Helper()
	c := dialTest(t)
	return c, c.Admin()
}

// enqueueN enqueues n jobs with payloads "0", "1", ... and returns their ids in order.
func enqueueN(t *testing.T, c *Client, queue string, n int) []string {
	t.Helper()
	specs := make([]Spec, n)
	for i := range specs {
		specs[i] = Spec{Payload: fmt.Appendf(nil, "%d", i)}
	}
	res, err := c.EnqueueBatch(context.Background(), queue, specs)
	if err != nil {
		t.Fatalf("EnqueueBatch: %v", err)
	}
	ids := make([]string, n)
	for i, r := range res {
		ids[i] = r.JobID
	}
	return ids
}

// killJobs leases n jobs of queue and fails each non-retryably, with messages that differ
// only in numbers and an address, so all of them fall into one dead-letter group.
func killJobs(t *testing.T, c *Client, queue string, n int) {
	t.Helper()
	ctx := context.Background()
	resp, err := c.Service().Lease(ctx, &jobwirev1.LeaseRequest{Queue: queue, MaxJobs: int32(n), Wait: durationpb.New(5 * time.Second)})
	if err != nil || len(resp.GetJobs()) != n {
		t.Fatalf("Lease %d: got %d jobs, %v", n, len(resp.GetJobs()), err)
	}
	for i, lj := range resp.GetJobs() {
		_, err := c.Service().Fail(ctx, &jobwirev1.FailRequest{
			JobId: lj.GetJob().GetId(), LeaseToken: lj.GetLeaseToken(),
			Error: &jobwirev1.JobError{
				Type:         "ConnectionRefused",
				Message:      fmt.Sprintf("connect to 10.0.0.%d:5432 refused after %d ms", i+1, 100*(i+1)),
				NonRetryable: true,
			},
		})
		if err != nil {
			t.Fatalf("Fail(%s): %v", lj.GetJob().GetId(), err)
		}
	}
}

func getQueue(t *testing.T, a *Admin, queue string) *jobwirev1.Queue {
	t.Helper()
	q, err := a.GetQueue(context.Background(), queue)
	if err != nil {
		t.Fatalf("GetQueue(%s): %v", queue, err)
	}
	return q
}

func TestAdminDeadLetters(t *testing.T) {
	c, a := adminTest(t)
	ctx := context.Background()
	queue := queueName(t)
	ids := enqueueN(t, c, queue, 3)
	killJobs(t, c, queue, 3)
	for _, id := range ids {
		waitFor(t, c, id, "dead", inState(StateDead))
	}

	page, err := a.ListDeadLetterGroups(ctx, queue, PageOptions{})
	if err != nil {
		t.Fatalf("ListDeadLetterGroups: %v", err)
	}
	if len(page.Items) != 1 || page.NextPageToken != "" {
		t.Fatalf("groups = %v (next %q), want one", page.Items, page.NextPageToken)
	}
	g := page.Items[0]
	if g.GetCount() != 3 || g.GetErrorType() != "ConnectionRefused" || len(g.GetFingerprint()) != 16 {
		t.Errorf("group = %v, want 3 ConnectionRefused jobs under a 16-digit fingerprint", g)
	}
	if !slices.Contains(ids, g.GetSampleJobId()) {
		t.Errorf("sample job %q is not one of %v", g.GetSampleJobId(), ids)
	}

	// A dry run counts and changes nothing.
	var dryProgress []RedriveProgress
	dry, err := a.RedriveDeadLetters(ctx, queue, RedriveOptions{
		Fingerprint: g.GetFingerprint(), DryRun: true,
		OnProgress: func(p RedriveProgress) { dryProgress = append(dryProgress, p) },
	})
	if err != nil {
		t.Fatalf("dry-run redrive: %v", err)
	}
	if dry.Matched != 3 || dry.Redriven != 0 || !dry.Done || len(dryProgress) != 1 {
		t.Errorf("dry run = %+v after %v, want 3 matched, none redriven, one message", dry, dryProgress)
	}
	if counts := getQueue(t, a, queue).GetCounts(); counts.GetDead() != 3 || counts.GetReady() != 0 {
		t.Errorf("after a dry run: counts = %v, want 3 dead", counts)
	}

	// The real one, rate-limited, reports its progress and ends with every job sent back.
	var progress []RedriveProgress
	done, err := a.RedriveDeadLetters(ctx, queue, RedriveOptions{
		Fingerprint: g.GetFingerprint(), Rate: 100,
		OnProgress: func(p RedriveProgress) { progress = append(progress, p) },
	})
	if err != nil {
		t.Fatalf("redrive: %v", err)
	}
	if done.Matched != 3 || done.Redriven != 3 || !done.Done {
		t.Errorf("redrive = %+v, want 3 matched and redriven", done)
	}
	if len(progress) == 0 || progress[0].Matched != 3 || progress[len(progress)-1] != done {
		t.Errorf("progress = %v, want the match count first and the result last", progress)
	}
	for i := 1; i < len(progress); i++ {
		if progress[i].Redriven < progress[i-1].Redriven {
			t.Errorf("progress went backwards: %v", progress)
		}
	}
	for _, id := range ids {
		if job := waitFor(t, c, id, "ready", inState(StateReady)); job.GetCountedAttempts() != 0 {
			t.Errorf("%s: counted attempts %d after a redrive, want 0", id, job.GetCountedAttempts())
		}
	}
	if page, err := a.ListDeadLetterGroups(ctx, queue, PageOptions{}); err != nil || len(page.Items) != 0 {
		t.Errorf("groups after the redrive = %v, %v; want none", page.Items, err)
	}
	counts := getQueue(t, a, queue).GetCounts()
	if counts.GetDead() != 0 || counts.GetReady() != 3 {
		t.Errorf("after the redrive: counts = %v, want 3 ready", counts)
	}
}

func TestAdminPauseResume(t *testing.T) {
	c, a := adminTest(t)
	ctx := context.Background()
	queue := queueName(t)
	ids := enqueueN(t, c, queue, 1)

	if err := a.PauseQueue(ctx, queue); err != nil {
		t.Fatalf("PauseQueue: %v", err)
	}
	if err := a.PauseQueue(ctx, queue); err != nil { // a no-op
		t.Fatalf("PauseQueue again: %v", err)
	}
	if q := getQueue(t, a, queue); !q.GetPaused() || q.GetCounts().GetReady() != 1 {
		t.Errorf("paused queue = %v", q)
	}
	resp, err := c.Service().Lease(ctx, &jobwirev1.LeaseRequest{Queue: queue, Wait: durationpb.New(300 * time.Millisecond)})
	if err != nil || len(resp.GetJobs()) != 0 {
		t.Fatalf("Lease on a paused queue = %v, %v; want nothing", resp.GetJobs(), err)
	}
	// Enqueues still go in.
	ids = append(ids, enqueueN(t, c, queue, 1)...)

	// A long-polling Lease wakes when the queue resumes.
	leased := make(chan *jobwirev1.LeaseResponse, 1)
	go func() {
		resp, err := c.Service().Lease(ctx, &jobwirev1.LeaseRequest{Queue: queue, MaxJobs: 2, Wait: durationpb.New(10 * time.Second)})
		if err != nil {
			t.Errorf("long-poll Lease: %v", err)
		}
		leased <- resp
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if err := a.ResumeQueue(ctx, queue); err != nil {
		t.Fatalf("ResumeQueue: %v", err)
	}
	resp = <-leased
	if got := len(resp.GetJobs()); got == 0 || time.Since(start) > 5*time.Second {
		t.Fatalf("Lease after ResumeQueue: %d jobs after %v", got, time.Since(start))
	}
	if q := getQueue(t, a, queue); q.GetPaused() {
		t.Errorf("queue still paused: %v", q)
	}
	for _, lj := range resp.GetJobs() {
		if !slices.Contains(ids, lj.GetJob().GetId()) {
			t.Errorf("leased %s, not one of %v", lj.GetJob().GetId(), ids)
		}
	}
}

func TestAdminListQueues(t *testing.T) {
	c, a := adminTest(t)
	ctx := context.Background()
	busy, other := queueName(t), queueName(t)
	enqueueN(t, c, busy, 4)
	killJobs(t, c, busy, 1)
	if _, err := c.Enqueue(ctx, busy, nil, WithDelay(time.Hour)); err != nil {
		t.Fatal(err)
	}
	enqueueN(t, c, other, 1)

	queues, err := a.ListQueues(ctx)
	if err != nil {
		t.Fatalf("ListQueues: %v", err)
	}
	byName := map[string]*jobwirev1.Queue{}
	for _, q := range queues {
		byName[q.GetName()] = q
	}
	if !slices.IsSortedFunc(queues, func(x, y *jobwirev1.Queue) int { return strings.Compare(x.GetName(), y.GetName()) }) {
		t.Errorf("queues not by name: %v", queueNames(queues))
	}
	got := byName[busy].GetCounts()
	want := &jobwirev1.QueueCounts{Scheduled: 1, Ready: 3, Dead: 1}
	if !proto.Equal(got, want) {
		t.Errorf("%s counts = %v, want %v", busy, got, want)
	}
	if byName[other].GetCounts().GetReady() != 1 {
		t.Errorf("%s = %v, want 1 ready", other, byName[other])
	}
	if eff := byName[busy].GetEffectiveSettings(); eff.GetMaxAttempts() != 3 {
		t.Errorf("effective settings = %v, want the broker's default of 3 attempts", eff)
	}
}

func TestAdminUpdateQueue(t *testing.T) {
	_, a := adminTest(t)
	ctx := context.Background()
	queue := queueName(t) // created by UpdateQueue
	q, err := a.UpdateQueue(ctx, queue, &jobwirev1.QueueSettings{MaxAttempts: proto.Int32(7), Priority: proto.Int32(5)})
	if err != nil {
		t.Fatalf("UpdateQueue: %v", err)
	}
	if q.GetSettings().GetMaxAttempts() != 7 || q.GetEffectiveSettings().GetPriority() != 5 {
		t.Errorf("after update: %v", q)
	}
	// Named in the mask but unset: back to the default; priority stays.
	q, err = a.UpdateQueue(ctx, queue, &jobwirev1.QueueSettings{}, "max_attempts")
	if err != nil {
		t.Fatalf("UpdateQueue with a mask: %v", err)
	}
	if q.GetSettings().MaxAttempts != nil || q.GetEffectiveSettings().GetMaxAttempts() != 3 || q.GetSettings().GetPriority() != 5 {
		t.Errorf("after the masked update: %v", q)
	}
}

func TestAdminListJobsPaging(t *testing.T) {
	c, a := adminTest(t)
	ctx := context.Background()
	queue := queueName(t)
	ids := enqueueN(t, c, queue, 7)

	var listed []string
	token := ""
	pages := 0
	for {
		page, err := a.ListJobs(ctx, queue, StateReady, ListJobsOptions{PageSize: 3, PageToken: token})
		if err != nil {
			t.Fatalf("ListJobs: %v", err)
		}
		pages++
		if len(page.Items) > 3 {
			t.Fatalf("page of %d jobs, asked for 3", len(page.Items))
		}
		for _, j := range page.Items {
			listed = append(listed, j.GetId())
			if len(j.GetSpec().GetPayload()) != 0 {
				t.Errorf("%s: payload without IncludePayloads", j.GetId())
			}
		}
		if token = page.NextPageToken; token == "" {
			break
		}
	}
	if !slices.Equal(listed, ids) || pages < 3 {
		t.Errorf("listed %v in %d pages, want %v (FIFO) in at least 3", listed, pages, ids)
	}

	// AllJobs follows the pages itself; newest first reverses the order.
	var newest []string
	for j, err := range a.AllJobs(ctx, queue, StateReady, ListJobsOptions{Order: OrderNewestFirst, PageSize: 2, IncludePayloads: true}) {
		if err != nil {
			t.Fatalf("AllJobs: %v", err)
		}
		newest = append(newest, j.GetId())
		if want := fmt.Sprint(slices.Index(ids, j.GetId())); string(j.GetSpec().GetPayload()) != want {
			t.Errorf("%s: payload %q, want %q", j.GetId(), j.GetSpec().GetPayload(), want)
		}
	}
	reversed := slices.Clone(ids)
	slices.Reverse(reversed)
	if !slices.Equal(newest, reversed) {
		t.Errorf("newest first: %v, want %v", newest, reversed)
	}

	// Breaking out stops listing.
	n := 0
	for range a.AllJobs(ctx, queue, StateReady, ListJobsOptions{PageSize: 2}) {
		if n++; n == 3 {
			break
		}
	}
	if n != 3 {
		t.Errorf("iterated %d jobs before breaking, want 3", n)
	}
}

func TestAdminBulkJobs(t *testing.T) {
	c, a := adminTest(t)
	ctx := context.Background()
	queue := queueName(t)
	ids := enqueueN(t, c, queue, 3)
	killJobs(t, c, queue, 1) // ids[0], the first in line

	// By ids, all or nothing: a ready job cannot be retried.
	_, err := a.RetryJobs(ctx, queue, JobSelection{IDs: []string{ids[0], ids[1]}})
	var rpcErr *Error
	if !errors.As(err, &rpcErr) || rpcErr.Code != codes.FailedPrecondition || rpcErr.Reason != ReasonWrongState {
		t.Errorf("RetryJobs of a ready job: %v, want FAILED_PRECONDITION with reason WRONG_STATE", err)
	}
	waitFor(t, c, ids[0], "still dead", inState(StateDead))
	if n, err := a.RetryJobs(ctx, queue, JobSelection{IDs: ids[:1]}); err != nil || n != 1 {
		t.Fatalf("RetryJobs = %d, %v; want 1", n, err)
	}
	waitFor(t, c, ids[0], "ready", inState(StateReady))

	later, err := c.Enqueue(ctx, queue, nil, WithDelay(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := a.PromoteJobs(ctx, queue); err != nil || n != 1 {
		t.Fatalf("PromoteJobs = %d, %v; want 1", n, err)
	}
	waitFor(t, c, later.JobID, "ready", inState(StateReady))

	killJobs(t, c, queue, 1)
	if n, err := a.PurgeDeadLetters(ctx, queue, PurgeOptions{All: true, DryRun: true}); err != nil || n != 1 {
		t.Errorf("dry-run PurgeDeadLetters = %d, %v; want 1", n, err)
	}
	if n, err := a.PurgeDeadLetters(ctx, queue, PurgeOptions{All: true}); err != nil || n != 1 {
		t.Errorf("PurgeDeadLetters = %d, %v; want 1", n, err)
	}
	if n, err := a.DrainQueue(ctx, queue); err != nil || n != 3 {
		t.Errorf("DrainQueue = %d, %v; want the 3 ready jobs", n, err)
	}
	if counts := getQueue(t, a, queue).GetCounts(); !proto.Equal(counts, &jobwirev1.QueueCounts{}) {
		t.Errorf("counts after purge and drain = %v, want none", counts)
	}
	if _, err := a.DeleteQueue(ctx, queue, false); err != nil {
		t.Fatalf("DeleteQueue: %v", err)
	}
	if _, err := a.GetQueue(ctx, queue); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetQueue of a deleted queue: %v, want not found", err)
	}
}

func TestAdminWatchQueue(t *testing.T) {
	c, a := adminTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	queue := queueName(t)
	ids := enqueueN(t, c, queue, 1)
	if err := a.PauseQueue(ctx, queue); err != nil {
		t.Fatal(err)
	}

	var kinds []QueueEventKind
	lastID := ""
	for ev, err := range a.WatchQueue(ctx, queue, "0") { // from the oldest kept
		if err != nil {
			t.Fatalf("WatchQueue after %v: %v", kinds, err)
		}
		kinds = append(kinds, ev.GetKind())
		if ev.GetKind() == jobwirev1.QueueEventKind_QUEUE_EVENT_KIND_ENQUEUED && ev.GetJobId() != ids[0] {
			t.Errorf("enqueued event of %q, want %s", ev.GetJobId(), ids[0])
		}
		if ev.GetEventId() == "" || ev.GetGap() {
			t.Errorf("event %v: no id, or a gap", ev)
		}
		lastID = ev.GetEventId()
		if ev.GetKind() == jobwirev1.QueueEventKind_QUEUE_EVENT_KIND_PAUSED {
			break
		}
	}
	want := []QueueEventKind{jobwirev1.QueueEventKind_QUEUE_EVENT_KIND_ENQUEUED, jobwirev1.QueueEventKind_QUEUE_EVENT_KIND_PAUSED}
	if !slices.Equal(kinds, want) {
		t.Errorf("events = %v, want %v", kinds, want)
	}

	// Resuming after the last event seen gives only what came later.
	if err := a.ResumeQueue(ctx, queue); err != nil {
		t.Fatal(err)
	}
	for ev, err := range a.WatchQueue(ctx, queue, lastID) {
		if err != nil {
			t.Fatalf("WatchQueue after %s: %v", lastID, err)
		}
		if ev.GetKind() != jobwirev1.QueueEventKind_QUEUE_EVENT_KIND_RESUMED {
			t.Errorf("first event after %s = %v, want RESUMED", lastID, ev)
		}
		break
	}
}

func TestAdminErrors(t *testing.T) {
	c, a := adminTest(t)
	ctx := context.Background()

	_, err := a.GetQueue(ctx, queueName(t)) // never used
	var rpcErr *Error
	if !errors.As(err, &rpcErr) || rpcErr.Code != codes.NotFound || rpcErr.Reason != ReasonQueueNotFound {
		t.Errorf("GetQueue of an unknown queue: %v, want NOT_FOUND with reason QUEUE_NOT_FOUND", err)
	}
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("GetQueue of an unknown queue: %v is not ErrNotFound", err)
	}

	queue := queueName(t)
	enqueueN(t, c, queue, 1)
	_, err = a.ListJobs(ctx, queue, StateReady, ListJobsOptions{PageSize: 5000})
	if !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("ListJobs with page size 5000: %v, want ErrInvalidArgument", err)
	}

}

func TestAdminDialAndNew(t *testing.T) {
	ctx := context.Background()
	own, err := DialAdmin(target, WithCallTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := own.ListQueues(ctx); err != nil {
		t.Errorf("ListQueues through DialAdmin: %v", err)
	}
	if err := own.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := own.ListQueues(ctx); codeOf(err) != codes.Canceled {
		t.Errorf("ListQueues after Close: %v, want CANCELED", err)
	}

	// A Client made by New on the caller's connection has an Admin on that connection.
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := New(conn).Admin().ListQueues(ctx); err != nil {
		t.Errorf("ListQueues through the Admin of a Client made by New: %v", err)
	}

	// A Client's Admin shares its connection: closing the Admin leaves the Client working.
	c := dialTest(t)
	shared := c.Admin()
	if err := shared.Close(); err != nil {
		t.Errorf("Close of a shared Admin: %v", err)
	}
	if _, err := shared.ListQueues(ctx); err != nil {
		t.Errorf("ListQueues after closing a shared Admin: %v", err)
	}
}

func codeOf(err error) codes.Code {
	var rpcErr *Error
	if errors.As(err, &rpcErr) {
		return rpcErr.Code
	}
	return codes.Unknown
}

func queueNames(qs []*jobwirev1.Queue) []string {
	names := make([]string, len(qs))
	for i, q := range qs {
		names[i] = q.GetName()
	}
	return names
}

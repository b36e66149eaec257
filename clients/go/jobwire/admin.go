package jobwire

// Admin wraps jobwire.v1.AdminService: queues, their jobs, dead letters, events and
// workers. It shares a Client's connection, or dials one with the Client's options, so
// transport, message limits, keepalive and the service config are the same.

import (
	"context"
	"io"
	"iter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	jobwirev1 "github.com/jobwire/jobwire/clients/go/gen/jobwire/v1"
)

// Admin operates queues: their counts and settings, pausing, listing and bulk-editing
// their jobs, dead letters (grouped by error fingerprint, redriven, purged), their
// events and the workers seen on them. It is safe for concurrent use. Its errors are
// mapped as the Client's are (FromStatus); the broker adds QUEUE_NOT_FOUND (NOT_FOUND),
// WRONG_STATE and QUEUE_BUSY (FAILED_PRECONDITION) for these calls.
type Admin struct {
	rpc         jobwirev1.AdminServiceClient
	callTimeout time.Duration
	closer      io.Closer // the Client DialAdmin made; nil when the connection is shared
}

// Admin returns an Admin on c's connection (the one Dial made, or the one given to New),
// with c's call timeout (WithCallTimeout). The Admin's own Close does nothing: the
// connection stays c's (or the caller's) to close.
func (c *Client) Admin() *Admin {
	return &Admin{rpc: jobwirev1.NewAdminServiceClient(c.cc), callTimeout: c.callTimeout}
}

// DialAdmin makes an Admin with a connection of its own to target, dialled exactly as
// Dial does with the same options; Close closes it.
func DialAdmin(target string, opts ...ClientOption) (*Admin, error) {
	c, err := Dial(target, opts...)
	if err != nil {
		return nil, err
	}
	a := c.Admin()
	a.closer = c
	return a, nil
}

// NewAdmin makes an Admin on a connection the caller made and keeps ownership of, as
// New does for a Client (the two can share it). Of the options only WithCallTimeout
// matters here.
func NewAdmin(conn grpc.ClientConnInterface, opts ...ClientOption) *Admin {
	cfg := newClientConfig(opts)
	return &Admin{rpc: jobwirev1.NewAdminServiceClient(conn), callTimeout: cfg.callTimeout}
}

// Close closes the connection DialAdmin made; it does nothing for a shared one.
func (a *Admin) Close() error {
	if a.closer == nil {
		return nil
	}
	return a.closer.Close()
}

// Service returns the generated gRPC client, for calls this type does not wrap. Map
// its errors with FromStatus.
func (a *Admin) Service() jobwirev1.AdminServiceClient { return a.rpc }

// invoke runs one unary call within the call timeout, if any, and maps its error.
// Retries and timeouts per method come from the service config of the connection.
func (a *Admin) invoke(ctx context.Context, call func(context.Context) error) error {
	if a.callTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.callTimeout)
		defer cancel()
	}
	return mapError(call(ctx))
}

// ListOrder is the order ListJobs returns jobs in.
type ListOrder = jobwirev1.ListOrder

// The orders of ListJobs. The zero value is OrderOldestFirst.
const (
	// OrderOldestFirst is the state's own order: by due time for scheduled jobs, by lease
	// order (priority, then FIFO) for ready ones, by lease expiry for active ones, by
	// finish time for finished ones.
	OrderOldestFirst = jobwirev1.ListOrder_LIST_ORDER_OLDEST_FIRST
	// OrderNewestFirst is the reverse.
	OrderNewestFirst = jobwirev1.ListOrder_LIST_ORDER_NEWEST_FIRST
)

// JobFilter narrows a set of jobs; every non-empty field must match. The zero value
// matches every job.
type JobFilter struct {
	// ErrorType: the last error's type, e.g. "TimeoutError" or "LEASE_EXPIRED".
	ErrorType string
	// HeaderKey: the job has this header, with HeaderValue as its value (any value when
	// HeaderValue is empty).
	HeaderKey   string
	HeaderValue string
	// ErrorFingerprint: the dead job's group (DeadLetterGroup.Fingerprint).
	ErrorFingerprint string
}

func (f JobFilter) proto() *jobwirev1.JobFilter {
	if f == (JobFilter{}) {
		return nil
	}
	return &jobwirev1.JobFilter{
		ErrorType: f.ErrorType, HeaderKey: f.HeaderKey, HeaderValue: f.HeaderValue, ErrorFingerprint: f.ErrorFingerprint,
	}
}

// Page is one page of a list call. NextPageToken, passed back as the next call's page
// token, continues after it; it is empty after the last page.
type Page[T any] struct {
	Items         []T
	NextPageToken string
}

// allPages follows the page tokens of list from start, yielding every item, until the
// last page, the first error (yielded once) or the caller's break.
func allPages[T any](start string, list func(token string) (Page[T], error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		token := start
		for {
			page, err := list(token)
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, item := range page.Items {
				if !yield(item, nil) {
					return
				}
			}
			if page.NextPageToken == "" {
				return
			}
			token = page.NextPageToken
		}
	}
}

// ListQueues returns every queue, by name, with its counts and settings
// (Queue.LastHour is empty here; GetQueue fills it in).
func (a *Admin) ListQueues(ctx context.Context) ([]*jobwirev1.Queue, error) {
	var resp *jobwirev1.ListQueuesResponse
	err := a.invoke(ctx, func(ctx context.Context) (err error) {
		resp, err = a.rpc.ListQueues(ctx, &jobwirev1.ListQueuesRequest{})
		return err
	})
	return resp.GetQueues(), err
}

// GetQueue returns one queue: counts per state, paused flag, settings, the age of its
// oldest ready job, throughput over the last hour and its workers. An unknown queue
// gives an *Error with code NOT_FOUND and reason QUEUE_NOT_FOUND.
func (a *Admin) GetQueue(ctx context.Context, queue string) (*jobwirev1.Queue, error) {
	var resp *jobwirev1.GetQueueResponse
	err := a.invoke(ctx, func(ctx context.Context) (err error) {
		resp, err = a.rpc.GetQueue(ctx, &jobwirev1.GetQueueRequest{Queue: queue})
		return err
	})
	return resp.GetQueue(), err
}

// UpdateQueue changes a queue's settings, creating the queue if it is new, and returns
// it. Only the settings named in fields change (QueueSettings field names as in the
// proto, e.g. "max_attempts", "backoff"); one named but unset in settings goes back to
// the broker's default. With no fields, every field set in settings changes. Set the
// optional integers with proto.Int32.
func (a *Admin) UpdateQueue(ctx context.Context, queue string, settings *jobwirev1.QueueSettings, fields ...string) (*jobwirev1.Queue, error) {
	req := &jobwirev1.UpdateQueueRequest{Queue: queue, Settings: settings}
	if len(fields) > 0 {
		req.UpdateMask = &fieldmaskpb.FieldMask{Paths: fields}
	}
	var resp *jobwirev1.UpdateQueueResponse
	err := a.invoke(ctx, func(ctx context.Context) (err error) {
		resp, err = a.rpc.UpdateQueue(ctx, req)
		return err
	})
	return resp.GetQueue(), err
}

// PauseQueue pauses a queue: enqueues are still accepted, but leases hand out nothing
// (a long-polling lease keeps waiting) until ResumeQueue. Active jobs keep their
// leases. Pausing a paused queue does nothing.
func (a *Admin) PauseQueue(ctx context.Context, queue string) error {
	return a.invoke(ctx, func(ctx context.Context) error {
		_, err := a.rpc.PauseQueue(ctx, &jobwirev1.PauseQueueRequest{Queue: queue})
		return err
	})
}

// ResumeQueue resumes a paused queue and wakes its long-polling leases on every broker
// replica. Resuming a queue that is not paused does nothing.
func (a *Admin) ResumeQueue(ctx context.Context, queue string) error {
	return a.invoke(ctx, func(ctx context.Context) error {
		_, err := a.rpc.ResumeQueue(ctx, &jobwirev1.ResumeQueueRequest{Queue: queue})
		return err
	})
}

// DrainQueue deletes every ready and scheduled job of a queue and returns how many it
// deleted. Active and finished jobs stay.
func (a *Admin) DrainQueue(ctx context.Context, queue string) (int64, error) {
	var resp *jobwirev1.DrainQueueResponse
	err := a.invoke(ctx, func(ctx context.Context) (err error) {
		resp, err = a.rpc.DrainQueue(ctx, &jobwirev1.DrainQueueRequest{Queue: queue})
		return err
	})
	return resp.GetDeleted(), err
}

// DeleteQueue deletes a queue with every job, its settings, events and worker records,
// and returns how many jobs it deleted. While jobs are active it fails with
// FAILED_PRECONDITION (reason QUEUE_BUSY), unless force is set; their workers then get
// NOT_FOUND when they settle.
func (a *Admin) DeleteQueue(ctx context.Context, queue string, force bool) (int64, error) {
	var resp *jobwirev1.DeleteQueueResponse
	err := a.invoke(ctx, func(ctx context.Context) (err error) {
		resp, err = a.rpc.DeleteQueue(ctx, &jobwirev1.DeleteQueueRequest{Queue: queue, Force: force})
		return err
	})
	return resp.GetDeleted(), err
}

// ListJobsOptions shape a ListJobs call; the zero value lists the first 50 jobs,
// oldest first, without payloads.
type ListJobsOptions struct {
	Order ListOrder
	// PageSize is the most jobs per page, in [0, 1000]; 0 means 50.
	PageSize int
	// PageToken is a page's NextPageToken, to list the page after it; only valid with
	// the same queue, state and order.
	PageToken string
	// Filter narrows the jobs. With a filter a page may hold fewer than PageSize jobs,
	// even none, before the last: the broker examines at most 5000 jobs per call.
	Filter JobFilter
	// IncludePayloads fills in spec.payload and result (empty otherwise); a page then
	// also ends before it would pass 4 MiB.
	IncludePayloads bool
}

// ListJobs returns one page of the jobs of a queue in one state. The page token is a
// position in the state's order, not an offset: a job that stays in the state is listed
// exactly once across the pages, however many jobs enter or leave it meanwhile.
func (a *Admin) ListJobs(ctx context.Context, queue string, state State, opts ListJobsOptions) (Page[*jobwirev1.Job], error) {
	req := &jobwirev1.ListJobsRequest{
		Queue: queue, State: state, Order: opts.Order, PageSize: int32(opts.PageSize), PageToken: opts.PageToken,
		Filter: opts.Filter.proto(), IncludePayloads: opts.IncludePayloads,
	}
	var resp *jobwirev1.ListJobsResponse
	err := a.invoke(ctx, func(ctx context.Context) (err error) {
		resp, err = a.rpc.ListJobs(ctx, req)
		return err
	})
	return Page[*jobwirev1.Job]{Items: resp.GetJobs(), NextPageToken: resp.GetNextPageToken()}, err
}

// AllJobs lists the jobs of a queue in one state page after page, from opts.PageToken
// on, as ListJobs does. An error is yielded once and ends the sequence; breaking out of
// the loop stops listing.
//
//	for job, err := range admin.AllJobs(ctx, "emails", jobwire.StateDead, jobwire.ListJobsOptions{}) {
//		if err != nil {
//			return err
//		}
//		fmt.Println(job.GetId(), job.GetLastError().GetMessage())
//	}
func (a *Admin) AllJobs(ctx context.Context, queue string, state State, opts ListJobsOptions) iter.Seq2[*jobwirev1.Job, error] {
	return allPages(opts.PageToken, func(token string) (Page[*jobwirev1.Job], error) {
		o := opts
		o.PageToken = token
		return a.ListJobs(ctx, queue, state, o)
	})
}

// JobSelection picks jobs of one queue for RetryJobs and DeleteJobs: the jobs IDs names
// (at most 1000; all or nothing), or, when IDs is empty, every job in State that
// matches Filter.
type JobSelection struct {
	IDs    []string
	State  State
	Filter JobFilter
}

// RetryJobs sends dead or cancelled jobs back to ready with their attempts counted
// afresh, and returns how many. By IDs, a job that is not dead or cancelled fails the
// call with FAILED_PRECONDITION (reason WRONG_STATE) and an unknown one with NOT_FOUND
// (JOB_NOT_FOUND); nothing is retried then.
func (a *Admin) RetryJobs(ctx context.Context, queue string, sel JobSelection) (int64, error) {
	req := &jobwirev1.RetryJobsRequest{Queue: queue, JobIds: sel.IDs, State: sel.State, Filter: sel.Filter.proto()}
	var resp *jobwirev1.RetryJobsResponse
	err := a.invoke(ctx, func(ctx context.Context) (err error) {
		resp, err = a.rpc.RetryJobs(ctx, req)
		return err
	})
	return resp.GetRetried(), err
}

// DeleteJobs deletes jobs that are not active and returns how many. By IDs, an active
// job fails the call with FAILED_PRECONDITION (WRONG_STATE; cancel it first) and an
// unknown one with NOT_FOUND; nothing is deleted then.
func (a *Admin) DeleteJobs(ctx context.Context, queue string, sel JobSelection) (int64, error) {
	req := &jobwirev1.DeleteJobsRequest{Queue: queue, JobIds: sel.IDs, State: sel.State, Filter: sel.Filter.proto()}
	var resp *jobwirev1.DeleteJobsResponse
	err := a.invoke(ctx, func(ctx context.Context) (err error) {
		resp, err = a.rpc.DeleteJobs(ctx, req)
		return err
	})
	return resp.GetDeleted(), err
}

// PromoteJobs makes scheduled jobs ready now, the given ones (at most 1000, all or
// nothing: FAILED_PRECONDITION, WRONG_STATE, for one that is not scheduled) or, with no
// ids, every scheduled job of the queue. It returns how many it promoted.
func (a *Admin) PromoteJobs(ctx context.Context, queue string, ids ...string) (int64, error) {
	var resp *jobwirev1.PromoteJobsResponse
	err := a.invoke(ctx, func(ctx context.Context) (err error) {
		resp, err = a.rpc.PromoteJobs(ctx, &jobwirev1.PromoteJobsRequest{Queue: queue, JobIds: ids})
		return err
	})
	return resp.GetPromoted(), err
}

// PageOptions page through a list; the zero value asks for the first page at the
// broker's default size.
type PageOptions struct {
	// PageSize is the most items per page; 0 is the call's default.
	PageSize int
	// PageToken is a page's NextPageToken, to list the page after it.
	PageToken string
}

// ListDeadLetterGroups returns one page (PageSize in [0, 1000]; 0 means 100) of a
// queue's dead jobs grouped by error fingerprint, most recently seen first. The
// fingerprint is the error type plus its message with numbers, ids, hex strings,
// addresses and quoted values replaced by placeholders (DeadLetterGroup.MessageTemplate).
func (a *Admin) ListDeadLetterGroups(ctx context.Context, queue string, opts PageOptions) (Page[*jobwirev1.DeadLetterGroup], error) {
	req := &jobwirev1.ListDeadLetterGroupsRequest{Queue: queue, PageSize: int32(opts.PageSize), PageToken: opts.PageToken}
	var resp *jobwirev1.ListDeadLetterGroupsResponse
	err := a.invoke(ctx, func(ctx context.Context) (err error) {
		resp, err = a.rpc.ListDeadLetterGroups(ctx, req)
		return err
	})
	return Page[*jobwirev1.DeadLetterGroup]{Items: resp.GetGroups(), NextPageToken: resp.GetNextPageToken()}, err
}

// AllDeadLetterGroups lists a queue's dead-letter groups page after page, as
// ListDeadLetterGroups does. An error is yielded once and ends the sequence.
func (a *Admin) AllDeadLetterGroups(ctx context.Context, queue string, opts PageOptions) iter.Seq2[*jobwirev1.DeadLetterGroup, error] {
	return allPages(opts.PageToken, func(token string) (Page[*jobwirev1.DeadLetterGroup], error) {
		return a.ListDeadLetterGroups(ctx, queue, PageOptions{PageSize: opts.PageSize, PageToken: token})
	})
}

// RedriveOptions choose the dead jobs RedriveDeadLetters sends back, and how fast. The
// zero value redrives every dead job of the queue as fast as batches go.
type RedriveOptions struct {
	// Fingerprint limits the redrive to one DeadLetterGroup; empty: every dead job
	// that Filter matches.
	Fingerprint string
	Filter      JobFilter
	// Rate is the most jobs sent back per second, in [0, 100000]; 0: no limit.
	Rate float64
	// Limit is the most jobs redriven, the oldest first; 0: all.
	Limit int64
	// DryRun only counts the jobs that would be redriven (RedriveProgress.Matched).
	DryRun bool
	// OnProgress, if set, is called with every progress message the broker streams,
	// the last one (Done) included, on the calling goroutine.
	OnProgress func(RedriveProgress)
}

// RedriveProgress is where a redrive stands.
type RedriveProgress struct {
	// Matched is how many jobs the redrive matched when it started (Limit applied).
	Matched int64
	// Redriven is how many it has sent back to ready so far.
	Redriven int64
	// Done is set on the last message.
	Done bool
}

// RedriveDeadLetters sends a queue's dead jobs back to ready, as RetryJobs does, and
// returns the final progress (Done set). Cancelling ctx stops the redrive; jobs already
// sent stay sent, and the progress so far comes back with the error. So does a stream
// that breaks before the end (ErrUnavailable): running the call again redrives the
// rest. The redrive is not retried here, since only the caller knows whether to.
func (a *Admin) RedriveDeadLetters(ctx context.Context, queue string, opts RedriveOptions) (RedriveProgress, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := a.rpc.RedriveDeadLetters(ctx, &jobwirev1.RedriveDeadLettersRequest{
		Queue: queue, Fingerprint: opts.Fingerprint, Filter: opts.Filter.proto(), Rate: opts.Rate,
		DryRun: opts.DryRun, Limit: opts.Limit,
	})
	if err != nil {
		return RedriveProgress{}, mapError(err)
	}
	var last RedriveProgress
	received := false
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			// A dry run's one message is its whole answer, done flag or not.
			if !last.Done && !(opts.DryRun && received) {
				return last, mapError(status.Error(codes.Unavailable, "redrive stream ended before it was done"))
			}
			last.Done = true
			return last, nil
		}
		if err != nil {
			return last, mapError(err)
		}
		received = true
		last = RedriveProgress{Matched: resp.GetMatched(), Redriven: resp.GetRedriven(), Done: resp.GetDone()}
		if opts.OnProgress != nil {
			opts.OnProgress(last)
		}
	}
}

// PurgeOptions choose the dead jobs PurgeDeadLetters deletes: one group, those dead
// longer than OlderThan, both (the group's jobs dead that long), or, with All, every
// one. The zero value is rejected with ErrInvalidArgument: All must be said.
type PurgeOptions struct {
	Fingerprint string
	OlderThan   time.Duration
	All         bool
	// DryRun only counts the jobs that would be deleted.
	DryRun bool
}

// PurgeDeadLetters deletes dead jobs of a queue and returns how many (with DryRun, how
// many it would).
func (a *Admin) PurgeDeadLetters(ctx context.Context, queue string, opts PurgeOptions) (int64, error) {
	req := &jobwirev1.PurgeDeadLettersRequest{Queue: queue, Fingerprint: opts.Fingerprint, All: opts.All, DryRun: opts.DryRun}
	if opts.OlderThan > 0 {
		req.OlderThan = durationpb.New(opts.OlderThan)
	}
	var resp *jobwirev1.PurgeDeadLettersResponse
	err := a.invoke(ctx, func(ctx context.Context) (err error) {
		resp, err = a.rpc.PurgeDeadLetters(ctx, req)
		return err
	})
	return resp.GetPurged(), err
}

// QueueEventKind says what happened in a QueueEvent (the generated enum; its values
// are jobwirev1.QueueEventKind_QUEUE_EVENT_KIND_*).
type QueueEventKind = jobwirev1.QueueEventKind

// QueueEvent is one event of a watched queue: the generated message, whose EventId
// resumes a watch after it.
type QueueEvent = jobwirev1.WatchQueueResponse

// WatchQueue streams a queue's events in the order they happened: after the event with
// id after ("" for only new events, "0" for the oldest the broker keeps). The first
// event has Gap set when events after `after` were trimmed before this call read them.
// The sequence runs until the caller breaks out of the loop (which closes the stream)
// or the stream ends with an error, ctx's cancellation included, which is yielded once;
// a new WatchQueue after the last EventId seen then picks up where it stopped.
func (a *Admin) WatchQueue(ctx context.Context, queue, after string) iter.Seq2[*QueueEvent, error] {
	return func(yield func(*QueueEvent, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := a.rpc.WatchQueue(ctx, &jobwirev1.WatchQueueRequest{Queue: queue, AfterEventId: after})
		if err != nil {
			yield(nil, mapError(err))
			return
		}
		for {
			ev, err := stream.Recv()
			if err == io.EOF {
				return
			}
			if err != nil {
				yield(nil, mapError(err))
				return
			}
			if !yield(ev, nil) {
				return
			}
		}
	}
}

// WorkerState is a worker's state as the broker derives it (the generated enum; its
// values are jobwirev1.WorkerState_WORKER_STATE_*).
type WorkerState = jobwirev1.WorkerState

// ListWorkers returns the workers seen (by the worker id they lease with) in the last
// hour, by id: on one queue, or on all when queue is empty; gone ones only with
// includeGone.
func (a *Admin) ListWorkers(ctx context.Context, queue string, includeGone bool) ([]*jobwirev1.Worker, error) {
	var resp *jobwirev1.ListWorkersResponse
	err := a.invoke(ctx, func(ctx context.Context) (err error) {
		resp, err = a.rpc.ListWorkers(ctx, &jobwirev1.ListWorkersRequest{Queue: queue, IncludeGone: includeGone})
		return err
	})
	return resp.GetWorkers(), err
}

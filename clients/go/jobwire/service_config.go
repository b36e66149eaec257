package jobwire

import (
	_ "embed" // for the service config
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
)

// service_config.json is a copy of protos/jobwire/v1/service_config.json: Go embeds only
// files inside its module. `make setup-go` (and so `make generate`) refreshes it, and
// TestServiceConfigCopyIsFresh and tools/check_generated.py fail when it is stale.
//
//go:generate cp ../../../protos/jobwire/v1/service_config.json service_config.json
//go:embed service_config.json
var defaultServiceConfig string

// DefaultServiceConfig returns the gRPC service config shipped with the protos
// (protos/jobwire/v1/service_config.json): the retry policy and timeout of each RPC.
// Dial passes it to grpc.WithDefaultServiceConfig; a connection given to New should get
// it the same way.
func DefaultServiceConfig() string { return defaultServiceConfig }

const serviceName = "jobwire.v1.BrokerService"

// methodPolicy is what the service config says about one method.
type methodPolicy struct {
	timeout time.Duration // 0: none
	retry   *retryPolicy  // nil: not retried
}

// retryPolicy is a service config retryPolicy. The client reads it for the retries it
// makes itself (an Enqueue with idempotency keys, reopening a watch); gRPC reads the same
// JSON for the calls it retries.
type retryPolicy struct {
	maxAttempts    int
	initialBackoff time.Duration
	maxBackoff     time.Duration
	multiplier     float64
	retryable      []codes.Code
}

// serviceConfig is the parsed service config: the policy of each method.
type serviceConfig struct {
	methods map[string]methodPolicy
	service methodPolicy // for methods of the service without an entry of their own
}

type jsonServiceConfig struct {
	MethodConfig []struct {
		Name []struct {
			Service string `json:"service"`
			Method  string `json:"method"`
		} `json:"name"`
		Timeout     string `json:"timeout"`
		RetryPolicy *struct {
			MaxAttempts          int          `json:"maxAttempts"`
			InitialBackoff       string       `json:"initialBackoff"`
			MaxBackoff           string       `json:"maxBackoff"`
			BackoffMultiplier    float64      `json:"backoffMultiplier"`
			RetryableStatusCodes []codes.Code `json:"retryableStatusCodes"`
		} `json:"retryPolicy"`
	} `json:"methodConfig"`
}

func parseServiceConfig(text string) (*serviceConfig, error) {
	var raw jsonServiceConfig
	if err := json.Unmarshal([]byte(text), &raw); err != nil {
		return nil, fmt.Errorf("jobwire: service config: %w", err)
	}
	sc := &serviceConfig{methods: map[string]methodPolicy{}}
	for _, mc := range raw.MethodConfig {
		var p methodPolicy
		var err error
		if p.timeout, err = parseDuration(mc.Timeout); err != nil {
			return nil, err
		}
		if r := mc.RetryPolicy; r != nil {
			p.retry = &retryPolicy{maxAttempts: min(r.MaxAttempts, 5), multiplier: r.BackoffMultiplier, retryable: r.RetryableStatusCodes}
			if p.retry.initialBackoff, err = parseDuration(r.InitialBackoff); err != nil {
				return nil, err
			}
			if p.retry.maxBackoff, err = parseDuration(r.MaxBackoff); err != nil {
				return nil, err
			}
		}
		for _, name := range mc.Name {
			switch {
			case name.Service != serviceName && name.Service != "":
			case name.Method != "":
				sc.methods[name.Method] = p
			default:
				sc.service = p
			}
		}
	}
	return sc, nil
}

// parseDuration reads a JSON protobuf Duration such as "0.1s"; "" is 0.
func parseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	secs, err := strconv.ParseFloat(strings.TrimSuffix(s, "s"), 64)
	if err != nil || !strings.HasSuffix(s, "s") || secs < 0 {
		return 0, fmt.Errorf("jobwire: service config: bad duration %q", s)
	}
	return time.Duration(secs * float64(time.Second)), nil
}

func (sc *serviceConfig) method(name string) methodPolicy {
	if p, ok := sc.methods[name]; ok {
		return p
	}
	return sc.service
}

// retries reports whether the policy retries a failure with this code.
func (p *retryPolicy) retries(code codes.Code) bool {
	for _, c := range p.retryable {
		if c == code {
			return true
		}
	}
	return false
}

// backoff is the pause before retry n (from 1): initialBackoff times multiplier^(n-1),
// at most maxBackoff, jittered by ±20% as gRPC does. A longer RetryInfo hint from the
// broker wins, up to maxBackoff.
func (p *retryPolicy) backoff(n int, hint time.Duration) time.Duration {
	d := float64(p.initialBackoff)
	for range n - 1 {
		d = min(d*max(p.multiplier, 1), float64(p.maxBackoff))
	}
	pause := time.Duration(d * (0.8 + 0.4*rand.Float64()))
	return max(pause, min(hint, p.maxBackoff))
}

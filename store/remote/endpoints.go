// SPDX-License-Identifier: Apache-2.0

package remote

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/stargz-store/stargz-store/internal/limit"
	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/registryauth"
)

// endpoint is one place a request can go: a mirror or the primary.
type endpoint struct {
	registryauth.Endpoint
	client *http.Client
}

// endpoints are where the requests of one Blob or Repository go,
// mirrors first and the primary last, and how they are sent: the retry
// policy, the host's request limit and outage memo (both nil for a
// Repository), the logger.
type endpoints struct {
	ref    refspec.Reference
	eps    []endpoint
	policy retryPolicy
	lim    *limit.Limiter // requests in flight to the host; nil: no bound
	out    *outage        // the host's outages; nil: none noted
	log    *slog.Logger
}

func newEndpoints(ref refspec.Reference, eps []registryauth.Endpoint, h *Host, o Options) endpoints {
	e := endpoints{ref: ref, policy: newRetryPolicy(o), log: o.Logger}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if h != nil {
		e.lim, e.out = h.requests, &h.outage
	}
	for _, ep := range eps {
		e.eps = append(e.eps, endpoint{Endpoint: ep, client: &http.Client{Transport: ep.Transport}})
	}
	return e
}

// requestFunc makes one attempt of a request against ep: it sends the
// request with exchange and reads the answer.
type requestFunc func(ctx context.Context, w *watchdog, ep *endpoint) error

// do is the one endpoint loop: it runs fn through retryPolicy.try,
// starting with endpoint start, and returns the index of the endpoint
// that served it. A host in an outage gets a probe instead (outage.go).
// Each failed attempt is logged at Debug as "<op> failed". When every
// endpoint failed, the primary's error (the last) decides the error's
// class, with the mirrors' for the log: a mirror that lacks an image does
// not make it missing. The error starts with what.
func (e *endpoints) do(ctx context.Context, op, what string, start int, fn requestFunc) (int, error) {
	if len(e.eps) == 0 {
		return -1, fmt.Errorf("%s: no registry endpoint", what)
	}
	note := func(i int, err error) {
		e.log.DebugContext(ctx, op+" failed", "ref", e.ref.String(), "host", e.eps[i].Host, "what", what, "err", err)
	}
	p := e.policy
	if e.out.down() {
		p = p.probe()
	}
	i, errs, cerr := p.try(ctx, len(e.eps), start, note, func(ctx context.Context, w *watchdog, i int) error {
		return fn(ctx, w, &e.eps[i])
	})
	if i >= 0 {
		if e.out.noteUp() {
			e.log.InfoContext(ctx, "registry answers again", "ref", e.ref.String())
		}
		return i, nil
	}
	err := e.fail(what, errs, cerr)
	if unreachable(errs, cerr) && e.out.noteDown() {
		e.log.WarnContext(ctx, "registry unreachable: reads make one short attempt until it answers",
			"ref", e.ref.String(), "probe_timeout", p.probe().idle, "err", err)
	}
	return -1, err
}

// fail is the error of a request no endpoint served: the cause of the
// context's end, or the primary's error with the mirrors' after it.
func (e *endpoints) fail(what string, errs []error, cerr error) error {
	if cerr != nil {
		return fmt.Errorf("%s: %w", what, cerr)
	}
	var all []error
	for j, err := range errs {
		if err != nil {
			all = append(all, fmt.Errorf("%s: %w", e.eps[j].Host, explain(err)))
		}
	}
	switch len(all) {
	case 0:
		return fmt.Errorf("%s: no endpoint tried", what)
	case 1:
		return fmt.Errorf("%s: %w", what, all[0])
	}
	return fmt.Errorf("%s: %w (mirrors: %v)", what, all[len(all)-1], errors.Join(all[:len(all)-1]...))
}

// exchange sends req to ep under the attempt's watchdog: the idle time
// runs from now (a wait for a request slot before it is not the
// registry's fault), the answer's headers are progress, and so are the
// reads of its body. A failed exchange is transient, unless the
// transport refused our credentials. The caller closes the body.
func exchange(w *watchdog, ep *endpoint, req *http.Request) (*http.Response, error) {
	w.start()
	resp, err := ep.client.Do(req)
	if err != nil {
		return nil, &attemptError{err: err, retry: !errors.Is(err, registryauth.ErrUnauthorized)}
	}
	w.progress()
	resp.Body = w.body(resp.Body)
	return resp, nil
}

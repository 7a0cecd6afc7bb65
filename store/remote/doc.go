// SPDX-License-Identifier: Apache-2.0

// Package remote is the store's registry client: range reads of a layer
// blob (Blob), and whole GETs of manifests, image configs and TOC blobs
// (Repository). It is the only part of the store that speaks HTTP. It
// knows nothing of layers or formats; package store decides what to read
// and how urgently.
//
// # Requests
//
// Every request goes to the endpoints registryauth gives for a reference:
// the registries.conf mirrors first, the primary last, each with its own
// transport (TLS, credentials and tokens, redirects, redaction). A Blob
// starts from the endpoint that answered it last; a Repository always
// starts at the first mirror, as containers/image does.
//
// # Attempts and fetches
//
// An attempt is one HTTP exchange with one endpoint. It fails when the
// registry makes no progress for FetchTimeout: from the moment the
// request is sent (after its request slot was granted; dialing, TLS, a
// token fetch and redirects included) until the response headers arrive,
// and from then on whenever FetchTimeout passes without another 64 KiB of
// the body or its end. A slow body that keeps moving is never cut by this
// (a 16 MiB piece needs 13 s at 10 Mbit/s and 2 min at 1 Mbit/s), a
// stalled one is caught within FetchTimeout, and one trickled to keep the
// connection alive must still deliver 64 KiB per FetchTimeout.
//
// A fetch is what one caller asks: one range, the ranges of one
// multi-range request, a manifest, a blob. It runs attempts against the
// endpoints in rounds, through one loop for every kind of request
// (endpoints.go): an endpoint that failed for good (404, 401, a malformed
// answer) leaves the rotation, one that failed transiently (5xx, 429,
// 408, a reset, refused or stalled connection, a short body) is tried
// again in the next round, after a backoff that starts at Backoff and
// doubles up to MaxBackoff, for at most Retries rounds more (by default
// until the budget).
//
// # The budget
//
// No attempt starts once the fetch's budget (ReadTimeout) has passed,
// and a Read, which a reader waits for, is cancelled at the budget, so
// that it also ends when its reader gives up. Prefetch and Background
// fetches keep a moving attempt past the budget: on a slow link eight
// 16 MiB pieces in flight need minutes, and nobody waits for them. A
// Repository's fetches are bounded by the caller's context (the store's
// resolve timeout).
//
// # Priorities and the request limit
//
// The Blobs of one registry host share a Host: at most n range requests
// in flight (NewHost), on-demand ones (Read, Prefetch) served first,
// Background ones at most a quarter of them and only when no on-demand
// request waits (package internal/limit). The wait for a slot is not the
// registry's fault: the progress bound starts after it.
//
// # Outages
//
// When a fetch gave up on a host because it could not be reached for its
// whole budget (every attempt failed transiently, or the budget ran
// out), the Host remembers it for 10 s: fetches from it then make one
// attempt of at most 2 s of no progress (a probe) instead of retrying
// for ReadTimeout. The kernel answers a failed read by reading the same
// pages again at once, which would otherwise make an application wait two
// or three times ReadTimeout for its EIO. A failed probe renews the memo,
// any answer ends it.
//
// # Multi-range requests
//
// ReadRanges asks for several ranges of a blob in one request and reads
// the multipart/byteranges answer (multirange.go), trusting only each
// part's own Content-Range: registries may reorder, merge, duplicate or
// overlap parts, and a byte is copied once. An answer that is wrong (a
// part outside the ranges, a bad Content-Range, a part of the wrong
// length, too many parts or bytes, no final boundary, missing bytes), a
// refusal (400, 416) or a whole-blob answer (200) turns multi-range
// requests off for the blob: it is read one range per request from then
// on, which registries get right. No allocation is decided by a part's
// Content-Range: parts stream into the caller's buffers.
//
// # Errors
//
// One table maps a registry's error status to an error (statusError):
// 401 and 403 wrap registryauth.ErrUnauthorized, 404 wraps ErrNotFound,
// 408, 429 and 5xx are transient. A blob that does not match its digest
// wraps ErrVerify. When every endpoint failed, the primary's error
// decides the class, with the mirrors' errors after it in the message: a
// mirror that lacks an image does not make it missing. A Read ended by
// its budget wraps context.DeadlineExceeded, with a cause that names the
// read timeout. Package store maps ErrNotFound and ErrVerify to its own
// classes.
package remote

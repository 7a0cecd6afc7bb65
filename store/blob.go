// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/stargz-store/stargz-store/cachedir"
)

// A layer's `blob` file is the compressed blob byte for byte. Storage
// reads it only to export the layer (push, save, `podman system check`),
// and what it reads must be what the blob digest names. A range of a
// blob cannot be checked on its own: only the digest of the whole blob
// says anything. So the first read of the blob file downloads the whole
// blob from the registry into a cache entry filed under the blob digest
// (the cache checks the content against it at commit, and once per
// process when an entry found on disk is first read), and every read is
// served from that entry. No byte of the blob reaches a reader before the
// whole blob has been checked.
//
// The trade-off: an export reads the whole blob anyway, but its first
// read waits for the whole download (the blob's size over the link's
// speed), and the cache holds the blob beside the layer's chunks until
// eviction. Export reads are rare; serving unchecked registry bytes is
// what this replaces.
//
// One download runs per layer at a time; concurrent readers wait for it,
// each with its own context (an interrupted reader leaves it running for
// the others). It reads the blob in pieces of blobPiece bytes (the memory
// it needs), each with its own deadline and retries, so that a failure
// costs one piece, not the download, and a stalled registry ends it. It
// runs on a goroutine of the layer, stopped by Close. A blob that does not
// match its digest is remembered for the layer's life: its readers get
// the error at once, without downloading again. Without a cache there is
// nowhere to check a blob: the blob file cannot be read.

// blobPiece is how many blob bytes one read of the download asks the
// registry for, and the download's buffer.
const blobPiece = 8 << 20

// blobPieceTimeout bounds one attempt at a piece: a registry that sends
// less than blobPiece bytes in that time (140 KB/s) has stalled.
// blobAttempts is how many attempts a piece gets. A reader of the blob
// file waits at most blobPieceTimeout × blobAttempts for one piece, and
// as long as the download makes progress.
const (
	blobPieceTimeout = time.Minute
	blobAttempts     = 3
)

// blobDownloadsPerRead bounds the downloads one read of the blob file may start: a
// blob evicted right after its download (a cache too small for what runs
// beside the export) is downloaded once more, then the read fails.
const blobDownloadsPerRead = 2

// errNoCache: the layer has no cache to download its blob into.
var errNoCache = errors.New("the blob file needs the cache")

// blobFile is what a layer's blob file needs: the download behind it.
type blobFile struct {
	// mu guards the fields below.
	mu sync.Mutex
	dl *blobDownload // the running or last download of the blob
}

// blobDownload is one download of a layer's blob into the cache.
type blobDownload struct {
	done chan struct{} // closed when the download has ended
	err  error         // its outcome, set before done is closed
}

// ReadBlobAt reads the layer's compressed blob, as the layer's `blob` file
// serves it, from the cache entry filed under the blob digest; the first
// read downloads the blob into it and waits for that (see above). It
// returns io.EOF at the end like io.ReaderAt.
func (l *Layer) ReadBlobAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read blob at %d: negative offset", off)
	}
	if off >= l.desc.Size {
		return 0, io.EOF
	}
	if l.cache == nil {
		return 0, fmt.Errorf("read blob %s: %w", l.desc.Digest, errNoCache)
	}
	want := p[:min(int64(len(p)), l.desc.Size-off)]
	for range blobDownloadsPerRead {
		n, err := l.cache.ReadAt(cachedir.Content(l.desc.Digest).Sized(l.desc.Size), want, off)
		if n == len(want) && (err == nil || errors.Is(err, io.EOF)) {
			if len(want) < len(p) {
				return n, io.EOF
			}
			return n, nil
		}
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // the blob is shorter than the manifest says
		}
		if !errors.Is(err, cachedir.ErrNotFound) {
			return 0, fmt.Errorf("read blob %s at %d: %w", l.desc.Digest, off, err)
		}
		if err := l.waitBlob(ctx); err != nil {
			return 0, err
		}
	}
	return 0, fmt.Errorf("read blob %s: evicted from the cache right after its download", l.desc.Digest)
}

// waitBlob joins the running download of the blob, or starts one, and
// waits for it or for ctx.
func (l *Layer) waitBlob(ctx context.Context) error {
	dl, err := l.blobDownload()
	if err != nil {
		return err
	}
	select {
	case <-dl.done:
		return dl.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// blobDownload returns the running download of the blob, starting one
// unless the last one found the registry's blob wrong.
func (l *Layer) blobDownload() (*blobDownload, error) {
	b := &l.blobFile
	b.mu.Lock()
	defer b.mu.Unlock()
	if dl := b.dl; dl != nil {
		select {
		case <-dl.done:
			if errors.Is(dl.err, ErrVerify) {
				return nil, dl.err
			}
		default:
			return dl, nil
		}
	}
	dl := &blobDownload{done: make(chan struct{})}
	started := l.spawn(func() {
		dl.err = l.copyBlob(l.ctx)
		close(dl.done)
	})
	if !started {
		return nil, fmt.Errorf("layer %s is closing: %w", l.desc.Digest, context.Canceled)
	}
	b.dl = dl
	return dl, nil
}

// copyBlob downloads the blob into the cache entry filed under its
// digest; the cache refuses the entry unless it hashes to the digest and
// has the manifest's size. An entry already there is fine.
func (l *Layer) copyBlob(ctx context.Context) error {
	start := time.Now()
	dg, size := l.desc.Digest, l.desc.Size
	w, err := l.cache.Writer(ctx, cachedir.Content(dg).Sized(size))
	switch {
	case errors.Is(err, cachedir.ErrExists):
		return nil
	case errors.Is(err, cachedir.ErrTooLarge):
		return fmt.Errorf("copy blob %s into the cache for the blob file: %w (a larger cache.max_size lets this layer be exported)", dg, err)
	case err != nil:
		return fmt.Errorf("copy blob %s into the cache for the blob file: %w", dg, err)
	}
	defer w.Abort()
	buf := make([]byte, min(size, blobPiece))
	for off := int64(0); off < size; {
		p := buf[:min(int64(len(buf)), size-off)]
		if err := l.readBlobPiece(ctx, p, off); err != nil {
			return fmt.Errorf("copy blob %s: %w", dg, err)
		}
		if _, err := w.Write(p); err != nil {
			return fmt.Errorf("copy blob %s into the cache: %w", dg, err)
		}
		off += int64(len(p))
	}
	if err := w.Commit(); err != nil {
		if errors.Is(err, cachedir.ErrCorrupt) {
			err = fmt.Errorf("%w: the registry's blob does not match its digest: %w", ErrVerify, err)
		}
		return fmt.Errorf("copy blob %s: %w", dg, err)
	}
	l.log.Info("blob copied into the cache for its blob file", "digest", dg.String(), "bytes", size, "dur", time.Since(start))
	return nil
}

// readBlobPiece fills p with the blob bytes at off, retrying an attempt
// that fails or stalls.
func (l *Layer) readBlobPiece(ctx context.Context, p []byte, off int64) error {
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, blobPieceTimeout)
		n, err := l.blob.ReadAt(actx, p, off)
		cancel()
		if n == len(p) && (err == nil || errors.Is(err, io.EOF)) {
			return nil
		}
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		if ctx.Err() != nil || attempt == blobAttempts {
			return fmt.Errorf("bytes %d-%d (%d attempts): %w", off, off+int64(len(p))-1, attempt, err)
		}
		l.log.Debug("retry blob piece", "digest", l.desc.Digest.String(), "off", off, "attempt", attempt, "err", err)
	}
}

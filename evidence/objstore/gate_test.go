package objstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/evidence/objstore/s3test"
)

// gated is a recorder whose Ready blocks until released, or fails.
type gated struct {
	recorder
	waiting chan struct{} // closed when Ready is first called
	release chan error    // what Ready returns
}

func newGated() *gated {
	return &gated{waiting: make(chan struct{}), release: make(chan error, 1)}
}

func (g *gated) Ready(ctx context.Context) error {
	close(g.waiting)
	select {
	case err := <-g.release:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

type uploadResult struct {
	obj Object
	err error
}

func upload(ctx context.Context, s *S3, key string, src *pattern, opts PutOptions, p Progress) chan uploadResult {
	out := make(chan uploadResult, 1)
	go func() {
		obj, err := s.Upload(ctx, key, src, src.size, opts, Resume{}, p)
		out <- uploadResult{obj, err}
	}()
	return out
}

func waitGate(t *testing.T, g *gated) {
	t.Helper()
	select {
	case <-g.waiting:
	case <-time.After(20 * time.Second):
		t.Fatal("the upload never reached its gate")
	}
}

func TestS3GateHoldsTheObjectBackUntilReady(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	aws3 := srv.AWSClient()
	s := newS3(t, srv, "evidence", nil)
	opts := func(sum string) PutOptions {
		return PutOptions{SHA256: sum, Mode: Governance, RetainUntil: time.Now().Add(time.Hour)}
	}

	t.Run("every part is sent, the object waits for Ready", func(t *testing.T) {
		src := newPattern(2*MinPartSize+1<<20, 11)
		sum := src.sum(t)
		g := newGated()
		res := upload(ctx, s, "clips/gated", src, opts(sum), g)
		waitGate(t, g)
		parts, err := aws3.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String("evidence"), Key: aws.String("clips/gated"), UploadId: aws.String(g.resume().UploadID)})
		require.NoError(t, err)
		assert.Len(t, parts.Parts, 3, "all parts are on the server")
		_, err = s.Stat(ctx, "clips/gated")
		assert.ErrorIs(t, err, ErrNotFound, "but there is no object before Ready")
		pending, err := s.Uploads(ctx, "clips/gated")
		require.NoError(t, err)
		require.Len(t, pending, 1)
		assert.Equal(t, g.resume().UploadID, pending[0].UploadID)

		g.release <- nil
		r := <-res
		require.NoError(t, r.err)
		got, n := readBack(t, aws3, "evidence", "clips/gated")
		assert.Equal(t, sum, got)
		assert.Equal(t, src.size, n)
		pending, err = s.Uploads(ctx, "clips/gated")
		require.NoError(t, err)
		assert.Empty(t, pending)
	})

	t.Run("a refusal leaves the upload for the caller to abort", func(t *testing.T) {
		src := newPattern(MinPartSize+1, 12)
		g := newGated()
		res := upload(ctx, s, "clips/refused", src, opts(src.sum(t)), g)
		waitGate(t, g)
		refused := errors.New("the ledger refused the clip")
		g.release <- refused
		r := <-res
		require.ErrorIs(t, r.err, refused)
		_, err := s.Stat(ctx, "clips/refused")
		assert.ErrorIs(t, err, ErrNotFound)
		pending, err := s.Uploads(ctx, "clips/refused")
		require.NoError(t, err)
		require.Len(t, pending, 1, "not aborted: the caller decides")
		id := pending[0].UploadID
		require.NoError(t, s.Abort(ctx, "clips/refused", id))
		pending, err = s.Uploads(ctx, "clips/refused")
		require.NoError(t, err)
		assert.Empty(t, pending, "no parts left behind")
		assert.NoError(t, s.Abort(ctx, "clips/refused", id), "aborting twice is harmless")
	})

	t.Run("a gated object of one part is a multipart upload too", func(t *testing.T) {
		src := newPattern(1<<20, 13)
		sum := src.sum(t)
		g := newGated()
		res := upload(ctx, s, "clips/small", src, opts(sum), g)
		waitGate(t, g)
		assert.NotEmpty(t, g.resume().UploadID)
		_, err := s.Stat(ctx, "clips/small")
		assert.ErrorIs(t, err, ErrNotFound, "a single PUT could not have been held back")
		g.release <- nil
		require.NoError(t, (<-res).err)
		got, _ := readBack(t, aws3, "evidence", "clips/small")
		assert.Equal(t, sum, got)

		_, err = s.Upload(ctx, "clips/empty", newPattern(0, 1), 0, opts(sha(nil)), Resume{}, newGated())
		assert.ErrorContains(t, err, "empty object")
	})

	t.Run("uploads of other keys are not listed", func(t *testing.T) {
		// AWS lists by prefix; "clips/gated-x" starts with "clips/gated".
		src := newPattern(MinPartSize+1, 14)
		g := newGated()
		res := upload(ctx, s, "clips/gated-x", src, opts(src.sum(t)), g)
		waitGate(t, g)
		pending, err := s.Uploads(ctx, "clips/gated")
		require.NoError(t, err)
		assert.Empty(t, pending)
		g.release <- errors.New("no")
		<-res
		require.NoError(t, s.Abort(ctx, "clips/gated-x", g.resume().UploadID))
	})
}

func TestDirGateHoldsTheRenameBack(t *testing.T) {
	d, _, _ := newTestDir(t)
	ctx := context.Background()
	data := newPattern(100<<10, 3)
	sum := data.sum(t)
	opts := PutOptions{SHA256: sum, Mode: Governance, RetainUntil: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)}

	g := newGated()
	done := make(chan error, 1)
	go func() {
		_, err := d.Upload(ctx, "clips/held", data, data.size, opts, Resume{}, g)
		done <- err
	}()
	waitGate(t, g)
	_, err := d.Stat(ctx, "clips/held")
	assert.ErrorIs(t, err, ErrNotFound, "not visible before Ready")
	g.release <- nil
	require.NoError(t, <-done)
	o, err := d.Stat(ctx, "clips/held")
	require.NoError(t, err)
	assert.Equal(t, sum, o.SHA256)

	g = newGated()
	go func() {
		_, err := d.Upload(ctx, "clips/refused", data, data.size, opts, Resume{}, g)
		done <- err
	}()
	waitGate(t, g)
	g.release <- errors.New("refused")
	require.ErrorContains(t, <-done, "refused")
	_, err = d.Stat(ctx, "clips/refused")
	assert.ErrorIs(t, err, ErrNotFound)
}

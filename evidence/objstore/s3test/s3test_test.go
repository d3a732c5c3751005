package s3test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStopRestartKeepsData(t *testing.T) {
	ctx := context.Background()
	srv := Start(t)
	assert.True(t, strings.HasPrefix(srv.Endpoint, "127.0.0.1:"))
	assert.Equal(t, "http://"+srv.Endpoint+"/b", srv.URL("b"))
	c := srv.AWSClient()
	_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("kept")})
	require.NoError(t, err)

	srv.Stop()
	srv.Stop() // idempotent
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = c.ListBuckets(sctx, &s3.ListBucketsInput{}, func(o *s3.Options) { o.RetryMaxAttempts = 1 })
	require.Error(t, err, "down while stopped")

	srv.Restart()
	out, err := c.ListBuckets(ctx, &s3.ListBucketsInput{})
	require.NoError(t, err)
	require.Len(t, out.Buckets, 1)
	assert.Equal(t, "kept", aws.ToString(out.Buckets[0].Name), "same data directory")
}

func TestBinary(t *testing.T) {
	t.Setenv("VIGIL_MINIO", filepath.Join(t.TempDir(), "missing"))
	_, err := Binary()
	assert.ErrorContains(t, err, "VIGIL_MINIO")

	exe := filepath.Join(t.TempDir(), "minio")
	require.NoError(t, os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755))
	t.Setenv("VIGIL_MINIO", exe)
	got, err := Binary()
	require.NoError(t, err)
	assert.Equal(t, exe, got)
}

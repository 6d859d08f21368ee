// Package s3sink is the mover's sink for S3-compatible object stores
// (MinIO, AWS S3), on minio-go.
//
// Entries are made with Put and Delete; their ordering key is
// "bucket/object", so operations on one object are applied in commit order.
//
// # Effectively once
//
// Every object written carries the entry's operation id, the id of the
// queue that committed it (the writer) and its sequence number in its user
// metadata (X-Amz-Meta-Zest-Op, X-Amz-Meta-Zest-Writer, X-Amz-Meta-Zest-Seq).
// When an earlier attempt may have landed (a retry after a timeout, or an
// entry pending when the mover restarted), the sink first reads the
// object's metadata: if it was written by the same queue, with this entry's
// sequence number or a newer one, the entry is done and nothing is written.
// So a retry or a crash-replay neither duplicates an object nor rolls it
// back to an older version. An object written by another queue (or by this
// queue before it was recreated, or by a version of Zest that did not record
// the writer) never counts as landed: the entry is written.
//
// minio-go's own retries are turned off (the mover retries, with backoff
// and persisted state), so an ambiguous failure is always seen and checked.
package s3sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/mover"
)

// Kinds of the entries this sink applies.
const (
	KindPut    = "s3.put"
	KindDelete = "s3.delete"
)

// Metadata keys the sink sets on every object it writes.
const (
	MetaOp     = "Zest-Op"
	MetaWriter = "Zest-Writer"
	MetaSeq    = "Zest-Seq"
)

// Put returns an entry that writes data to bucket/object, with the content
// type and user metadata given (metadata may be nil).
func Put(bucket, object string, data []byte, contentType string, metadata map[string]string) effectqueue.Entry {
	meta := make(map[string]string, len(metadata)+1)
	for k, v := range metadata {
		meta["x-amz-meta-"+k] = v
	}
	if contentType != "" {
		meta["content-type"] = contentType
	}
	return effectqueue.Entry{Kind: KindPut, Key: bucket + "/" + object, Payload: data, Meta: meta}
}

// Delete returns an entry that removes bucket/object.
func Delete(bucket, object string) effectqueue.Entry {
	return effectqueue.Entry{Kind: KindDelete, Key: bucket + "/" + object}
}

// Options configure a Sink. Credentials and endpoint fall back to the
// environment: ZEST_S3_ENDPOINT, ZEST_S3_ACCESS_KEY and ZEST_S3_SECRET_KEY (or
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), ZEST_S3_SECURE, ZEST_S3_REGION.
// Credentials are never logged.
type Options struct {
	// Endpoint is host[:port], without scheme (e.g. "127.0.0.1:9000",
	// "s3.amazonaws.com").
	Endpoint string
	// AccessKey and SecretKey are the credentials.
	AccessKey, SecretKey string
	// Secure selects HTTPS. With Endpoint from the environment, it is read
	// from ZEST_S3_SECURE ("true"/"false"); otherwise it is as set here.
	Secure bool
	// Region is the bucket region; empty lets minio-go discover it.
	Region string
	// Transport is the HTTP transport (e.g. with a custom CA for TLS).
	// Default: minio-go's.
	Transport http.RoundTripper
	// CreateBuckets makes the sink create a bucket that does not exist.
	// Off by default: a missing bucket is a permanent error.
	CreateBuckets bool
}

// Sink writes entries to an S3-compatible store.
//
// A Sink is safe for concurrent use.
type Sink struct {
	c         *minio.Client
	opts      Options
	transport *http.Transport // the sink's own, closed by Close; nil if the caller's
	mu        sync.Mutex
	exists    map[string]bool // buckets known to exist
}

// Close releases the sink's idle connections. The sink stays usable.
func (s *Sink) Close() {
	if s.transport != nil {
		s.transport.CloseIdleConnections()
	}
}

// New returns a sink for the store described by opts (nil for the
// environment only). It does not contact the store: call Check for that.
func New(opts *Options) (*Sink, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Endpoint == "" {
		o.Endpoint = os.Getenv("ZEST_S3_ENDPOINT")
		if v := os.Getenv("ZEST_S3_SECURE"); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("s3sink: ZEST_S3_SECURE is %q, want true or false", v)
			}
			o.Secure = b
		}
	}
	if o.AccessKey == "" {
		o.AccessKey = firstEnv("ZEST_S3_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
	}
	if o.SecretKey == "" {
		o.SecretKey = firstEnv("ZEST_S3_SECRET_KEY", "AWS_SECRET_ACCESS_KEY")
	}
	if o.Region == "" {
		o.Region = os.Getenv("ZEST_S3_REGION")
	}
	switch {
	case o.Endpoint == "":
		return nil, errors.New("s3sink: no endpoint: set Options.Endpoint or ZEST_S3_ENDPOINT")
	case strings.Contains(o.Endpoint, "://"):
		return nil, fmt.Errorf("s3sink: endpoint %q must be host[:port] without a scheme; use Secure for https", o.Endpoint)
	case o.AccessKey == "" || o.SecretKey == "":
		return nil, errors.New("s3sink: no credentials: set Options.AccessKey and SecretKey, or ZEST_S3_ACCESS_KEY and ZEST_S3_SECRET_KEY")
	}
	tr := o.Transport
	var own *http.Transport
	if tr == nil {
		t, err := minio.DefaultTransport(o.Secure)
		if err != nil {
			return nil, fmt.Errorf("s3sink: transport: %w", err)
		}
		tr, own = t, t
	}
	c, err := minio.New(o.Endpoint, &minio.Options{
		Creds:      credentials.NewStaticV4(o.AccessKey, o.SecretKey, ""),
		Secure:     o.Secure,
		Region:     o.Region,
		Transport:  tr,
		MaxRetries: 1, // the mover retries, and must see every failure
	})
	if err != nil {
		return nil, fmt.Errorf("s3sink: endpoint %q: %w", o.Endpoint, err)
	}
	return &Sink{c: c, opts: o, exists: map[string]bool{}, transport: own}, nil
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// Client returns the underlying minio-go client.
func (s *Sink) Client() *minio.Client { return s.c }

// Check contacts the store and reports a clear error if it cannot be
// reached or refuses the credentials; with a bucket, it also checks (or,
// with CreateBuckets, creates) the bucket.
func (s *Sink) Check(ctx context.Context, bucket string) error {
	if bucket == "" {
		if _, err := s.c.ListBuckets(ctx); err != nil {
			return s.explain(err)
		}
		return nil
	}
	return s.ensureBucket(ctx, bucket)
}

func (s *Sink) explain(err error) error {
	switch minio.ToErrorResponse(err).Code {
	case "":
		return fmt.Errorf("s3sink: cannot reach %s (secure=%v): %w", s.opts.Endpoint, s.opts.Secure, err)
	case "InvalidAccessKeyId":
		return fmt.Errorf("s3sink: %s rejected the access key (check ZEST_S3_ACCESS_KEY): %w", s.opts.Endpoint, err)
	case "SignatureDoesNotMatch":
		return fmt.Errorf("s3sink: %s rejected the secret key (check ZEST_S3_SECRET_KEY): %w", s.opts.Endpoint, err)
	case "AccessDenied":
		return fmt.Errorf("s3sink: %s denied access: %w", s.opts.Endpoint, err)
	}
	return fmt.Errorf("s3sink: %s: %w", s.opts.Endpoint, err)
}

// ensureBucket checks bucket's name and that it exists (creating it with
// CreateBuckets), once per bucket: the name check is a regular expression,
// too costly to run on every object.
func (s *Sink) ensureBucket(ctx context.Context, bucket string) error {
	s.mu.Lock()
	ok := s.exists[bucket]
	s.mu.Unlock()
	if ok {
		return nil
	}
	if err := s3utils.CheckValidBucketName(bucket); err != nil {
		return mover.Permanent(fmt.Errorf("s3sink: invalid bucket name %q: %w", bucket, err))
	}
	found, err := s.c.BucketExists(ctx, bucket)
	if err != nil {
		return classify(err, s.explain(err))
	}
	if !found {
		if !s.opts.CreateBuckets {
			return mover.Permanent(fmt.Errorf("s3sink: bucket %q does not exist (Options.CreateBuckets is off)", bucket))
		}
		if err := s.c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{Region: s.opts.Region}); err != nil {
			if c := minio.ToErrorResponse(err).Code; c != "BucketAlreadyOwnedByYou" && c != "BucketAlreadyExists" {
				return classify(err, fmt.Errorf("s3sink: create bucket %q: %w", bucket, err))
			}
		}
	}
	s.mu.Lock()
	s.exists[bucket] = true
	s.mu.Unlock()
	return nil
}

// Apply implements mover.Sink.
func (s *Sink) Apply(ctx context.Context, d mover.Delivery) error {
	bucket, object, ok := strings.Cut(d.Key, "/")
	if !ok || bucket == "" || object == "" {
		return mover.Permanent(fmt.Errorf("s3sink: ordering key %q is not bucket/object", d.Key))
	}
	if d.Kind != KindPut && d.Kind != KindDelete {
		return mover.Permanent(fmt.Errorf("s3sink: unknown kind %q", d.Kind))
	}
	// minio-go checks names too, but with errors that carry no S3 code.
	if err := s3utils.CheckValidObjectName(object); err != nil {
		return mover.Permanent(fmt.Errorf("s3sink: invalid object name (%d bytes): %w", len(object), err))
	}
	if err := s.ensureBucket(ctx, bucket); err != nil {
		return err
	}
	if d.MayHaveLanded {
		done, err := s.landed(ctx, bucket, object, d.Writer, d.Seq)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
	if d.Kind == KindDelete {
		if err := s.c.RemoveObject(ctx, bucket, object, minio.RemoveObjectOptions{}); err != nil {
			return classify(err, fmt.Errorf("s3sink: delete %s: %w", d.Key, err))
		}
		return nil
	}
	opts := minio.PutObjectOptions{UserMetadata: map[string]string{
		MetaOp: d.OpID, MetaWriter: d.Writer, MetaSeq: strconv.FormatUint(d.Seq, 10)}}
	for k, v := range d.Meta {
		switch lk := strings.ToLower(k); {
		case lk == "content-type":
			opts.ContentType = v
		case strings.HasPrefix(lk, "x-amz-meta-"):
			opts.UserMetadata[k[len("x-amz-meta-"):]] = v
		}
	}
	_, err := s.c.PutObject(ctx, bucket, object, bytes.NewReader(d.Payload), int64(len(d.Payload)), opts)
	if err != nil {
		return classify(err, fmt.Errorf("s3sink: put %s: %w", d.Key, err))
	}
	return nil
}

// landed reports whether the object already reflects entry seq of writer,
// or a newer entry of the same writer, so that applying seq again would
// duplicate or roll it back. Sequence numbers of other writers say nothing.
func (s *Sink) landed(ctx context.Context, bucket, object, writer string, seq uint64) (bool, error) {
	info, err := s.c.StatObject(ctx, bucket, object, minio.StatObjectOptions{})
	if err != nil {
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return false, nil
		}
		return false, classify(err, fmt.Errorf("s3sink: check %s/%s: %w", bucket, object, err))
	}
	var haveWriter, haveSeq string
	for k, v := range info.UserMetadata {
		switch {
		case strings.EqualFold(k, MetaWriter):
			haveWriter = v
		case strings.EqualFold(k, MetaSeq):
			haveSeq = v
		}
	}
	if writer == "" || haveWriter != writer {
		return false, nil
	}
	have, err := strconv.ParseUint(haveSeq, 10, 64)
	return err == nil && have >= seq, nil
}

// Supersedes implements mover.Superseder: a put or delete replaces the whole
// object, so it supersedes any older operation on the same object.
func (s *Sink) Supersedes(newer, older effectqueue.Item) bool {
	return newer.Key == older.Key && newer.Seq > older.Seq &&
		(newer.Kind == KindPut || newer.Kind == KindDelete) &&
		(older.Kind == KindPut || older.Kind == KindDelete)
}

// permanentCodes are S3 error codes that retrying cannot fix.
var permanentCodes = map[string]bool{
	"AccessDenied": true, "NoSuchBucket": true, "InvalidBucketName": true,
	"InvalidObjectName": true, "XMinioInvalidObjectName": true, "KeyTooLongError": true,
	"InvalidAccessKeyId": true, "SignatureDoesNotMatch": true, "EntityTooLarge": true,
	"InvalidArgument": true, "MethodNotAllowed": true, "AllAccessDisabled": true,
}

// classify returns wrapped, marked permanent when raw (minio-go's error, whose
// S3 code ToErrorResponse can only read unwrapped) says retrying cannot help.
// Network errors, timeouts, 5xx and throttling stay retryable; throttling
// gets the error class "throttled", other 5xx "server" (see
// mover.ErrorClass).
func classify(raw, wrapped error) error {
	r := minio.ToErrorResponse(raw)
	throttled := r.StatusCode == http.StatusTooManyRequests || r.Code == "SlowDown" || r.Code == "RequestTimeout" ||
		r.StatusCode == http.StatusRequestTimeout
	switch {
	case permanentCodes[r.Code]:
		return mover.Permanent(wrapped)
	case throttled:
		return mover.WithClass("throttled", wrapped)
	case r.StatusCode >= 400 && r.StatusCode < 500:
		return mover.Permanent(wrapped)
	case r.StatusCode >= 500:
		return mover.WithClass("server", wrapped)
	}
	return wrapped
}

// Command example walks through the webhook service from Go, as an internal service would: it creates
// a webhook pointing at a receiver of its own, reads it back, publishes an event, waits for the
// delivery, verifies the signature of what its receiver got, reads the field violations of a bad
// request and the code of a call without a token, and deletes the webhook. Any step that does not go
// as expected ends the program with status 1.
package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	webhooksv1 "webhooks.internal/gen/go/webhooks/v1"
)

func main() {
	target := flag.String("target", "127.0.0.1:50051", "the service's gRPC address")
	tokenFile := flag.String("token-file", "data/admin-token", "a file holding an admin token for the organization")
	org := flag.String("org", "acme", "the organization the webhook is created in")
	flag.Parse()
	log.SetFlags(0)
	// One deadline for the whole walk-through, generous enough for a busy machine.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	token, err := os.ReadFile(*tokenFile)
	if err != nil {
		log.Fatalf("reading the token: %v", err)
	}
	conn, err := dial(*target, strings.TrimSpace(string(token)))
	if err != nil {
		log.Fatalf("connecting to %s: %v", *target, err)
	}
	defer conn.Close()
	webhooks := webhooksv1.NewWebhookServiceClient(conn)
	events := webhooksv1.NewEventServiceClient(conn)

	const secret = "s3cr3t-from-go"
	receiver, err := listen()
	if err != nil {
		log.Fatalf("starting the receiver: %v", err)
	}
	defer receiver.Close()

	hook, err := webhooks.CreateWebhook(ctx, &webhooksv1.CreateWebhookRequest{
		Parent: "organizations/" + *org,
		Webhook: &webhooksv1.Webhook{
			DisplayName: "Go example",
			PayloadUrl:  receiver.url,
			Secret:      secret,
		},
	})
	if err != nil {
		log.Fatalf("CreateWebhook: %v", err)
	}
	fmt.Printf("created %s (has_secret=%t)\n", hook.Name, hook.HasSecret)

	got, err := webhooks.GetWebhook(ctx, &webhooksv1.GetWebhookRequest{Name: hook.Name})
	if err != nil {
		log.Fatalf("GetWebhook: %v", err)
	}
	fmt.Printf("got %s: %q, active=%t\n", got.Name, got.DisplayName, got.GetActive())

	published, err := events.PublishEvent(ctx, &webhooksv1.PublishEventRequest{
		// The idempotency key: a retry of this call with the same key queues nothing new.
		RequestId: "go-example-" + randomHex(),
		Event: &webhooksv1.Event{
			Stack:        "organizations/" + *org + "/projects/website/stacks/prod",
			User:         &webhooksv1.Identity{Name: "Morty Smith", GithubLogin: "morty"},
			Organization: &webhooksv1.Identity{Name: *org, GithubLogin: *org},
			Payload: &webhooksv1.Event_UpdateEvent{UpdateEvent: &webhooksv1.UpdateEvent{
				UpdateUrl:       "https://app.pulumi.com/" + *org + "/website/prod/updates/1",
				Kind:            webhooksv1.UpdateKind_UPDATE_KIND_UPDATE,
				Result:          webhooksv1.UpdateResult_UPDATE_RESULT_SUCCEEDED,
				ResourceChanges: map[string]int64{"create": 2, "update": 1},
			}},
		},
	})
	if err != nil {
		log.Fatalf("PublishEvent: %v", err)
	}
	if len(published.Deliveries) != 1 {
		log.Fatalf("PublishEvent queued %d deliveries, want 1", len(published.Deliveries))
	}
	fmt.Printf("published event %s: %d delivery\n", published.EventId, len(published.Deliveries))

	delivery, err := waitForDelivery(ctx, webhooks, published.Deliveries[0])
	if err != nil {
		log.Fatalf("waiting for the delivery: %v", err)
	}
	fmt.Printf("delivery %s: %s after %d attempt(s), HTTP %d\n",
		path.Base(delivery.Name), delivery.State, delivery.AttemptCount, delivery.ResponseCode)

	select {
	case post := <-receiver.posts:
		if err := verify(post, secret, path.Base(delivery.Name)); err != nil {
			log.Fatalf("the receiver's request: %v", err)
		}
		fmt.Printf("receiver got %s %s, signature verified\n",
			post.Header.Get("Pulumi-Webhook-Kind"), post.Header.Get("Pulumi-Webhook-ID"))
	case <-ctx.Done():
		log.Fatal("the delivery succeeded but the receiver got nothing")
	}

	_, err = webhooks.CreateWebhook(ctx, &webhooksv1.CreateWebhookRequest{
		Parent:  "organizations/" + *org,
		Webhook: &webhooksv1.Webhook{DisplayName: "Bad", PayloadUrl: "ftp://example.com/hook"},
	})
	violations, err := fieldViolations(err)
	if err != nil {
		log.Fatalf("CreateWebhook with an ftp URL: %v", err)
	}
	for _, violation := range violations {
		fmt.Printf("invalid argument: %s: %s\n", violation.Field, violation.Description)
	}

	anonymous, err := dial(*target, "")
	if err != nil {
		log.Fatalf("connecting to %s: %v", *target, err)
	}
	defer anonymous.Close()
	_, err = webhooksv1.NewWebhookServiceClient(anonymous).GetWebhook(ctx, &webhooksv1.GetWebhookRequest{Name: hook.Name})
	if status.Code(err) != codes.Unauthenticated {
		log.Fatalf("GetWebhook without a token: got %v, want Unauthenticated", err)
	}
	fmt.Printf("without a token: %s\n", status.Code(err))

	if _, err := webhooks.DeleteWebhook(ctx, &webhooksv1.DeleteWebhookRequest{Name: hook.Name}); err != nil {
		log.Fatalf("DeleteWebhook: %v", err)
	}
	_, err = webhooks.GetWebhook(ctx, &webhooksv1.GetWebhookRequest{Name: hook.Name})
	if status.Code(err) != codes.NotFound {
		log.Fatalf("GetWebhook after DeleteWebhook: got %v, want NotFound", err)
	}
	fmt.Printf("deleted %s\n", hook.Name)
}

func randomHex() string {
	random := make([]byte, 8)
	if _, err := rand.Read(random); err != nil {
		log.Fatalf("reading random bytes: %v", err)
	}
	return hex.EncodeToString(random)
}

// bearer sends the token in the `authorization` header of every call.
type bearer string

func (token bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(token)}, nil
}

// RequireTransportSecurity lets the token travel over plaintext, which the example's loopback
// connection is; a deployment behind TLS would return true.
func (bearer) RequireTransportSecurity() bool { return false }

// dial connects without TLS, with token on every call unless it is empty.
//
// grpc.Dial and grpc.WithInsecure are what Debian's grpc-go 1.33 offers; with a current grpc-go,
// write grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()), ...).
func dial(target, token string) (*grpc.ClientConn, error) {
	options := []grpc.DialOption{grpc.WithInsecure()}
	if token != "" {
		options = append(options, grpc.WithPerRPCCredentials(bearer(token)))
	}
	return grpc.Dial(target, options...)
}

// waitForDelivery polls a delivery until it leaves PENDING; one that FAILED is an error.
func waitForDelivery(ctx context.Context, webhooks webhooksv1.WebhookServiceClient, name string) (*webhooksv1.WebhookDelivery, error) {
	for {
		delivery, err := webhooks.GetWebhookDelivery(ctx, &webhooksv1.GetWebhookDeliveryRequest{
			Name: name,
			View: webhooksv1.WebhookDeliveryView_WEBHOOK_DELIVERY_VIEW_BASIC,
		})
		if err != nil {
			return nil, err
		}
		switch delivery.State {
		case webhooksv1.WebhookDeliveryState_WEBHOOK_DELIVERY_STATE_SUCCEEDED:
			return delivery, nil
		case webhooksv1.WebhookDeliveryState_WEBHOOK_DELIVERY_STATE_FAILED:
			return nil, fmt.Errorf("%s failed: HTTP %d %s", name, delivery.ResponseCode, delivery.Error)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s still %s after %d attempt(s)", name, delivery.State, delivery.AttemptCount)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// fieldViolations returns the BadRequest detail of an INVALID_ARGUMENT error.
func fieldViolations(err error) ([]*errdetails.BadRequest_FieldViolation, error) {
	if status.Code(err) != codes.InvalidArgument {
		return nil, fmt.Errorf("got %v, want InvalidArgument", err)
	}
	for _, detail := range status.Convert(err).Details() {
		if badRequest, ok := detail.(*errdetails.BadRequest); ok && len(badRequest.FieldViolations) > 0 {
			return badRequest.FieldViolations, nil
		}
	}
	return nil, fmt.Errorf("%v carries no BadRequest field violations", err)
}

// post is one request the receiver got.
type post struct {
	Header http.Header
	Body   []byte
}

type receiver struct {
	url      string
	posts    chan post
	listener net.Listener
}

// listen starts an HTTP receiver on a free loopback port. The service refuses loopback URLs unless
// its allowed networks include them, as `make run` and the tests arrange.
func listen() (*receiver, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{
		url:      "http://" + listener.Addr().String() + "/hook",
		posts:    make(chan post, 16),
		listener: listener,
	}
	go http.Serve(listener, http.HandlerFunc(func(w http.ResponseWriter, request *http.Request) {
		body, err := io.ReadAll(request.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.posts <- post{Header: request.Header, Body: body}
	}))
	return r, nil
}

func (r *receiver) Close() error { return r.listener.Close() }

// verify checks what a receiver should: the body's HMAC-SHA256 under the webhook's secret equals the
// Pulumi-Webhook-Signature header, and Pulumi-Webhook-ID names the delivery.
func verify(got post, secret, deliveryID string) error {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(got.Body)
	expected := hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(expected), []byte(got.Header.Get("Pulumi-Webhook-Signature"))) {
		return errors.New("Pulumi-Webhook-Signature does not match the body")
	}
	if id := got.Header.Get("Pulumi-Webhook-ID"); id != deliveryID {
		return fmt.Errorf("Pulumi-Webhook-ID is %q, want %q", id, deliveryID)
	}
	return nil
}

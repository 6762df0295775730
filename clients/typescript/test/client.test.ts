// Every RPC of the service once, through the generated client and the helpers, against the real server.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";

import {
  type Clients,
  createClients,
  ERROR_DOMAIN,
  errorInfo,
  errorReason,
  fieldViolations,
  retryDelay,
  StackAction,
  UpdateKind,
  UpdateResult,
  verifySignature,
  type Webhook,
  WebhookDeliveryState,
  WebhookDeliveryView,
  WebhookFilter,
  WebhookFormat,
} from "../src/index.js";
import { eventually, Receiver, type RunningService, startService } from "./support.js";

const ORG = "organizations/acme";
const STACK = `${ORG}/projects/website/stacks/prod`;
const SECRET = "s3cr3t";
const ROTATED = "n3w-s3cr3t";

/** The error a call fails with; fails the test if it succeeds. */
async function failure(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (error) {
    return ConnectError.from(error);
  }
  assert.fail("the call succeeded");
}

describe("the TypeScript client against the real service", () => {
  let service: RunningService;
  let receiver: Receiver;
  let clients: Clients;
  let webhook: Webhook;

  before(async () => {
    [service, receiver] = await Promise.all([startService(), Receiver.start()]);
    clients = createClients(service.url, { token: service.token });
  });

  after(async () => {
    await Promise.all([service?.stop(), receiver?.close()]);
  });

  it("refuses a call without a token: UNAUTHENTICATED, with a reason", async () => {
    const anonymous = createClients(service.url);
    const error = await failure(anonymous.webhooks.listWebhooks({ parent: ORG }));
    assert.equal(error.code, Code.Unauthenticated);
    assert.equal(errorReason(error), "TOKEN_MISSING");
    assert.equal(errorInfo(error)?.domain, ERROR_DOMAIN);
  });

  it("creates, gets and lists a webhook", async () => {
    webhook = await clients.webhooks.createWebhook({
      parent: ORG,
      webhookId: "all-events",
      webhook: { displayName: "All events", payloadUrl: receiver.url("/all"), secret: SECRET },
    });
    assert.equal(webhook.name, `${ORG}/webhooks/all-events`);
    assert.equal(webhook.hasSecret, true);
    assert.equal(webhook.secret, "");
    assert.notEqual(webhook.etag, "");
    assert.deepEqual(await clients.webhooks.getWebhook({ name: webhook.name }), webhook);
    const page = await clients.webhooks.listWebhooks({ parent: ORG, pageSize: 10 });
    assert.deepEqual(
      page.webhooks.map((listed) => listed.name),
      [webhook.name],
    );
    assert.equal(page.nextPageToken, "");
  });

  it("lists every violation of a bad request in its BadRequest, with indexed paths", async () => {
    const error = await failure(
      clients.webhooks.createWebhook({
        parent: STACK,
        webhook: {
          displayName: "",
          payloadUrl: "ftp://example.com/hook",
          filters: [WebhookFilter.UPDATE_FAILED, WebhookFilter.DEPLOYMENT_FAILED, WebhookFilter.STACK_CREATED],
        },
      }),
    );
    assert.equal(error.code, Code.InvalidArgument);
    assert.deepEqual(
      fieldViolations(error).map(({ field, reason }) => [field, reason]),
      [
        ["webhook.display_name", "FIELD_REQUIRED"],
        ["webhook.payload_url", "INVALID_URL"],
        ["webhook.filters[2]", "FILTER_NOT_ALLOWED"],
      ],
    );
    assert.equal(errorReason(error), "FIELD_REQUIRED");
    assert.equal(retryDelay(error), undefined);
  });

  it("updates with an etag, refuses a stale one, and keeps the secret under a * mask", async () => {
    const renamed = await clients.webhooks.updateWebhook({
      webhook: { name: webhook.name, displayName: "Everything", etag: webhook.etag },
      updateMask: { paths: ["display_name"] },
    });
    assert.equal(renamed.displayName, "Everything");
    assert.notEqual(renamed.etag, webhook.etag);

    const stale = await failure(
      clients.webhooks.updateWebhook({
        webhook: { name: webhook.name, displayName: "Lost update", etag: webhook.etag },
        updateMask: { paths: ["display_name"] },
      }),
    );
    assert.equal(stale.code, Code.Aborted);
    assert.equal(errorReason(stale), "ETAG_MISMATCH");

    // What a Get returns, sent back whole: the secret it never shows stays.
    const replaced = await clients.webhooks.updateWebhook({
      webhook: { ...renamed, format: WebhookFormat.RAW, filters: [WebhookFilter.UPDATE_FAILED] },
      updateMask: { paths: ["*"] },
    });
    assert.equal(replaced.hasSecret, true);
    assert.deepEqual(replaced.filters, [WebhookFilter.UPDATE_FAILED]);
    webhook = replaced;
  });

  it("publishes an event whose delivery is signed, then shows and redelivers it", async () => {
    const published = await clients.events.publishEvent({
      event: {
        stack: STACK,
        user: { name: "Morty Smith", githubLogin: "morty" },
        organization: { name: "Acme", githubLogin: "acme" },
        payload: {
          case: "updateEvent",
          value: { kind: UpdateKind.UPDATE, result: UpdateResult.FAILED, resourceChanges: { create: 2n } },
        },
      },
      requestId: "update-42",
    });
    assert.equal(published.deliveries.length, 1);
    const [name] = published.deliveries;

    const [received] = await receiver.waitFor("/all", 1);
    const signature = String(received.headers["pulumi-webhook-signature"]);
    assert.equal(verifySignature(SECRET, received.body, signature), true);
    assert.equal(verifySignature("another secret", received.body, signature), false);
    assert.equal(verifySignature(SECRET, Buffer.concat([received.body, Buffer.from(" ")]), signature), false);
    assert.equal(JSON.parse(received.body.toString()).kind, "update");

    const delivered = await eventually(async () => {
      const delivery = await clients.webhooks.getWebhookDelivery({ name });
      return delivery.state === WebhookDeliveryState.SUCCEEDED ? delivery : undefined;
    });
    assert.equal(delivered.attempts.length, 1);
    assert.equal(delivered.payload, received.body.toString());

    const listed = await clients.webhooks.listWebhookDeliveries({
      parent: webhook.name,
      view: WebhookDeliveryView.FULL,
    });
    assert.deepEqual(
      listed.deliveries.map((delivery) => delivery.name),
      [name],
    );

    const again = await clients.webhooks.redeliverWebhookDelivery({ name });
    assert.equal(again.attemptCount, 2);
    const [, second] = await receiver.waitFor("/all", 2);
    assert.equal(second.headers["pulumi-webhook-id"], received.headers["pulumi-webhook-id"]);
  });

  it("rotates the secret at once and recovers failed deliveries (there are none)", async () => {
    const rotated = await clients.webhooks.rotateWebhookSecret({
      name: webhook.name,
      secret: ROTATED,
      overlap: { seconds: 0n },
    });
    assert.ok(rotated.webhook);
    assert.equal(rotated.webhook.hasSecret, true);
    assert.equal(rotated.webhook.previousSecretExpireTime, undefined);
    assert.equal(rotated.secret, "");
    assert.notEqual(rotated.webhook.etag, webhook.etag);
    webhook = rotated.webhook;

    const recovered = await clients.webhooks.recoverWebhookDeliveries({
      parent: webhook.name,
      since: timestampFromDate(new Date(0)),
    });
    assert.equal(recovered.recoveredCount, 0);
  });

  it("pings, then deletes: the webhook is NOT_FOUND with its reason", async () => {
    const ping = await clients.webhooks.pingWebhook({ name: webhook.name });
    assert.equal(ping.kind, "ping");
    assert.equal(ping.state, WebhookDeliveryState.SUCCEEDED);
    const [, , pinged] = await receiver.waitFor("/all", 3);
    assert.equal(verifySignature(ROTATED, pinged.body, String(pinged.headers["pulumi-webhook-signature"])), true);

    await clients.webhooks.deleteWebhook({ name: webhook.name });
    const gone = await failure(clients.webhooks.getWebhook({ name: webhook.name }));
    assert.equal(gone.code, Code.NotFound);
    assert.equal(errorReason(gone), "WEBHOOK_NOT_FOUND");
  });

  it("publishes a stack event to no webhook at all", async () => {
    const published = await clients.events.publishEvent({
      event: { stack: STACK, payload: { case: "stackEvent", value: { action: StackAction.CREATED } } },
    });
    assert.notEqual(published.eventId, "");
    assert.deepEqual(published.deliveries, []);
  });
});

describe("a service over its rate limit", () => {
  let service: RunningService;

  before(async () => {
    service = await startService("--rate-limit", "1");
  });

  after(async () => {
    await service?.stop();
  });

  it("says when to retry", async () => {
    const { webhooks } = createClients(service.url, { token: service.token });
    const error = await failure(
      (async () => {
        for (let call = 0; call < 5; call++) await webhooks.listWebhooks({ parent: ORG });
      })(),
    );
    assert.equal(error.code, Code.ResourceExhausted);
    assert.equal(errorReason(error), "RATE_LIMITED");
    const delay = retryDelay(error);
    assert.ok(delay !== undefined && delay > 0 && delay <= 1000, `retry delay ${delay}`);
  });
});

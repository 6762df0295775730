/**
 * The webhook delivery service from TypeScript: Connect clients over gRPC, generated from protos/, and the
 * few helpers every caller needs (a token on each call, reading rich errors, checking signatures).
 */
import { createHmac, timingSafeEqual } from "node:crypto";

import { type Client, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import {
  type BadRequest_FieldViolation,
  BadRequestSchema,
  type ErrorInfo,
  ErrorInfoSchema,
  RetryInfoSchema,
} from "./gen/google/rpc/error_details_pb.js";
import { EventService } from "./gen/webhooks/v1/event_service_pb.js";
import { WebhookService } from "./gen/webhooks/v1/webhook_service_pb.js";

export * from "./gen/webhooks/v1/delivery_pb.js";
export * from "./gen/webhooks/v1/event_pb.js";
export * from "./gen/webhooks/v1/event_service_pb.js";
export * from "./gen/webhooks/v1/webhook_pb.js";
export * from "./gen/webhooks/v1/webhook_service_pb.js";
export type { BadRequest_FieldViolation, ErrorInfo } from "./gen/google/rpc/error_details_pb.js";

/** The `domain` of every `google.rpc.ErrorInfo` the service sends. */
export const ERROR_DOMAIN = "webhooks.internal";

/** Without a deadline of its own, a call gives up after this long. */
export const DEFAULT_TIMEOUT_MS = 30_000;

export interface ClientOptions {
  /** Sent on every call as `authorization: Bearer <token>`. */
  token?: string;
  /** The deadline of calls that set none (`timeoutMs` in a call's options); 30 seconds when left out. */
  timeoutMs?: number;
  /** More interceptors, run after the one that adds the token. */
  interceptors?: Interceptor[];
}

/** Both services' clients, sharing one HTTP/2 connection. */
export interface Clients {
  webhooks: Client<typeof WebhookService>;
  events: Client<typeof EventService>;
}

/**
 * Clients for the service at `baseUrl` (`http://host:port` for plaintext, `https://host:port` for TLS),
 * speaking gRPC.
 */
export function createClients(baseUrl: string, options: ClientOptions = {}): Clients {
  const interceptors = [...(options.token === undefined ? [] : [bearer(options.token)]), ...(options.interceptors ?? [])];
  const transport = createGrpcTransport({
    baseUrl,
    interceptors,
    defaultTimeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  });
  return { webhooks: createClient(WebhookService, transport), events: createClient(EventService, transport) };
}

function bearer(token: string): Interceptor {
  const value = `Bearer ${token}`;
  return (next) => (request) => {
    request.header.set("authorization", value);
    return next(request);
  };
}

/**
 * Every violation of a request an INVALID_ARGUMENT error lists (`google.rpc.BadRequest`), in order: `field`
 * is a path such as `webhook.filters[2]`, `reason` one of the README's error reasons. Empty for other errors.
 */
export function fieldViolations(error: unknown): BadRequest_FieldViolation[] {
  return ConnectError.from(error)
    .findDetails(BadRequestSchema)
    .flatMap((badRequest) => badRequest.fieldViolations);
}

/** The error's `google.rpc.ErrorInfo`, which every error of the service carries. */
export function errorInfo(error: unknown): ErrorInfo | undefined {
  return ConnectError.from(error).findDetails(ErrorInfoSchema)[0];
}

/** The stable reason of an error of this service (`WEBHOOK_NOT_FOUND`, `ETAG_MISMATCH`, ...). */
export function errorReason(error: unknown): string | undefined {
  const info = errorInfo(error);
  return info?.domain === ERROR_DOMAIN ? info.reason : undefined;
}

/** How long the service asks to wait before trying again (`google.rpc.RetryInfo`), in milliseconds. */
export function retryDelay(error: unknown): number | undefined {
  const delay = ConnectError.from(error).findDetails(RetryInfoSchema)[0]?.retryDelay;
  return delay === undefined ? undefined : Number(delay.seconds) * 1000 + delay.nanos / 1e6;
}

/**
 * Whether `header` (a delivery's `Pulumi-Webhook-Signature`) is the hex HMAC-SHA256 of the exact `body`
 * bytes under `secret`. Pass the raw body as received, before any JSON parsing.
 */
export function verifySignature(secret: string, body: string | Uint8Array, header: string): boolean {
  const expected = Buffer.from(createHmac("sha256", secret).update(body).digest("hex"));
  const given = Buffer.from(header.trim().toLowerCase());
  return given.length === expected.length && timingSafeEqual(given, expected);
}

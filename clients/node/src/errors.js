// Typed errors built from sessiond's RFC 9457 problem+json answers (docs/api.md).

/** Any error answered by a sessiond node, or the transport to it. */
export class SessiondError extends Error {
  constructor(message, { status = 0, type = '', title = '', detail = '', retryAfter, body, cause } = {}) {
    super(message, cause ? { cause } : undefined);
    this.name = new.target.name;
    this.status = status;
    this.type = type;
    this.title = title;
    this.detail = detail;
    if (retryAfter !== undefined) this.retryAfter = retryAfter;
    if (body !== undefined) this.body = body;
  }
}

/** 400: bad JSON, a bad body, a bad id, a malformed precondition. */
export class BadRequestError extends SessiondError {}
/** 401: no token, or one the node does not accept. */
export class UnauthorizedError extends SessiondError {}
/** 403: an API token on an admin route. */
export class ForbiddenError extends SessiondError {}
/** 404: no such session (missing, expired or revoked), job, cache value or route. */
export class NotFoundError extends SessiondError {}
/** 409: a queue lease lost (expired and taken by another worker, or the job finished). */
export class ConflictError extends SessiondError {}
/** 410: a PUT to a revoked session id; a revoked id is never brought back. */
export class GoneError extends SessiondError {}
/** 412: If-Match / If-None-Match did not hold. */
export class PreconditionFailedError extends SessiondError {}
/** 413: a body, session data, payload or value too large. */
export class PayloadTooLargeError extends SessiondError {}
/** 415: wrong Content-Type (a client bug). */
export class UnsupportedMediaTypeError extends SessiondError {}
/** 422: a merge patch that does not keep data an object; too many queues or job types. */
export class UnprocessableError extends SessiondError {}
/** 429: a full queue, or too many failed authentications; `retryAfter` in seconds. */
export class TooManyRequestsError extends SessiondError {}
/** 503: overloaded or a dependency down; `retryAfter` in seconds. */
export class UnavailableError extends SessiondError {}
/** The request did not finish within the client's `timeoutMs`. */
export class TimeoutError extends SessiondError {}
/** No node could be reached (connection refused, reset, DNS), after failing over every URL. */
export class ConnectionError extends SessiondError {}

const byStatus = {
  400: BadRequestError,
  401: UnauthorizedError,
  403: ForbiddenError,
  404: NotFoundError,
  409: ConflictError,
  410: GoneError,
  412: PreconditionFailedError,
  413: PayloadTooLargeError,
  415: UnsupportedMediaTypeError,
  422: UnprocessableError,
  429: TooManyRequestsError,
  503: UnavailableError,
};

/** Seconds of a Retry-After header (delta-seconds or an HTTP date); undefined when absent. */
export function parseRetryAfter(value) {
  if (value === undefined || value === null || value === '') return undefined;
  const s = String(value).trim();
  if (/^\d+$/.test(s)) return Number(s);
  const when = Date.parse(s);
  if (Number.isNaN(when)) return undefined;
  return Math.max(0, Math.ceil((when - Date.now()) / 1000));
}

/** The typed error for an HTTP answer with status >= 400. */
export function errorFromResponse(status, headers, text) {
  let problem = {};
  try {
    const parsed = text ? JSON.parse(text) : {};
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) problem = parsed;
  } catch {
    // not JSON: keep the text as the detail
    problem = { detail: text };
  }
  const Cls = byStatus[status] ?? SessiondError;
  const title = typeof problem.title === 'string' ? problem.title : '';
  const detail = typeof problem.detail === 'string' ? problem.detail : '';
  const message = `${status} ${title || 'error'}${detail ? `: ${detail}` : ''}`;
  return new Cls(message, {
    status,
    type: typeof problem.type === 'string' ? problem.type : '',
    title,
    detail,
    retryAfter: parseRetryAfter(headers['retry-after']),
    body: problem,
  });
}

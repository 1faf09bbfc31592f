//! A shadow copy's job, off the request path: send the copy to the shadow service (and,
//! for a share of copies, the same request to the primary again to learn noise), then
//! compare and record. Holds its route's queue slot until done.

use bytes::Bytes;
use http::HeaderValue;
use pingora_http::RequestHeader;
use std::borrow::Cow;
use std::sync::Arc;

use super::exchange::{exchange, Answer, ExchangeError};
use crate::router::shadow::X_FICUS_SHADOW;
use crate::runtime::Runtime;
use crate::shadow::encoding::{decoded, DecodeError};
use crate::shadow::record::SampleRequest;
use crate::shadow::store::{Reservation, Slot};
use crate::shadow::Response;

/// Everything a copy needs, owned.
pub struct Job {
    pub slot: Slot,
    /// The copy's body bytes, given back to the route's budget when the job ends.
    pub _held: Reservation,
    /// The snapshot the request ran under: its route, services and comparison.
    pub runtime: Arc<Runtime>,
    pub route: usize,
    /// The service that answered the client.
    pub primary_service: usize,
    pub path: String,
    pub head: RequestHeader,
    pub shadow_target: Option<String>,
    pub request_body: Bytes,
    pub primary: Answer,
    pub request_id: HeaderValue,
}

pub async fn run(job: Job) {
    let route = job.runtime.config.router.route(job.route);
    let Some(shadow) = &route.shadow else {
        return;
    };
    let record = &job.slot.state().record;
    // The upstream request as the primary got it: each copy is made from it, and it is
    // kept as it is for a mismatch's sample (sensitive headers are redacted there).
    let head = &job.head;
    // The primary is asked a second time only for requests without side effects: a
    // copied POST must never reach production twice.
    let learn = head.method.is_safe()
        && shadow.compare.noise_sample() > 0.0
        && fastrand::f64() < shadow.compare.noise_sample();
    let services = &job.runtime.services;
    // A service with client credentials gets its own token, as its primary traffic does.
    let Ok(shadow_token) = Box::pin(token(&job.runtime, shadow.service)).await else {
        return record.shadow_error();
    };
    let primary_token = match learn {
        true => Box::pin(token(&job.runtime, job.primary_service))
            .await
            .ok(),
        false => None,
    };
    let shadow_target = job.shadow_target.as_deref();
    let to_shadow = Box::pin(exchange(
        &services[shadow.service],
        head,
        |h| mark(h, &job.request_id, shadow_token.as_ref(), shadow_target),
        job.request_body.clone(),
        shadow.timeout,
        shadow.max_body,
    ));
    let (answer, again) = match primary_token {
        Some(token) => {
            let to_primary = Box::pin(exchange(
                &services[job.primary_service],
                head,
                |h| mark(h, &job.request_id, token.as_ref(), None),
                job.request_body.clone(),
                shadow.timeout,
                shadow.max_body,
            ));
            let (a, b) = tokio::join!(to_shadow, to_primary);
            (a, b.ok())
        }
        None => (to_shadow.await, None),
    };
    let answer = match answer {
        Ok(a) => a,
        Err(ExchangeError::Timeout(_)) => return record.shadow_timeout(),
        Err(ExchangeError::TooLarge(_)) => return record.answer_too_large(),
        Err(ExchangeError::Unavailable | ExchangeError::Failed(_)) => return record.shadow_error(),
    };
    // Compressed answers are compared by what they say.
    let max = shadow.max_body;
    let Some(primary_body) = readable(&job.primary, max) else {
        return record.answer_too_large();
    };
    let Some(shadow_body) = readable(&answer, max) else {
        return record.answer_too_large();
    };
    let primary = Response {
        status: job.primary.status,
        headers: &job.primary.headers,
        body: &primary_body,
    };
    if let Some(again) = &again {
        if let Some(body) = readable(again, max) {
            let second = Response {
                status: again.status,
                headers: &again.headers,
                body: &body,
            };
            record.learn_noise(&shadow.compare, &primary, &second);
        }
    }
    let request = SampleRequest {
        method: head.method.as_str(),
        path: &job.path,
        headers: &head.headers,
    };
    let answer = Response {
        status: answer.status,
        headers: &answer.headers,
        body: &shadow_body,
    };
    record.compare(&shadow.compare, &request, &primary, &answer);
}

/// An answer's body as compared: decoded, or as it came when it only claims a coding it
/// does not have (a difference worth seeing); `None` when decoded it is over the bound.
fn readable(a: &Answer, max: usize) -> Option<Cow<'_, [u8]>> {
    match decoded(&a.headers, &a.body, max) {
        Ok(b) => Some(b),
        Err(DecodeError::TooLarge(_)) => None,
        Err(DecodeError::Corrupt(_)) => Some(Cow::Borrowed(&a.body)),
    }
}

/// Makes a copy's head from the primary's: marked as a copy, with the request's id, the
/// service's own token in place of the client's `Authorization` when it has one, and the
/// shadow's own target when its path rules differ. `false` when the target is not a
/// valid one.
fn mark(
    head: &mut RequestHeader,
    request_id: &HeaderValue,
    token: Option<&HeaderValue>,
    target: Option<&str>,
) -> bool {
    head.remove_header(&http::header::EXPECT);
    // Header values built by the gateway: cannot fail.
    let _ = head.insert_header(X_FICUS_SHADOW.clone(), HeaderValue::from_static("1"));
    let _ = head.insert_header(
        crate::proxy::headers::X_REQUEST_ID.clone(),
        request_id.clone(),
    );
    if let Some(token) = token {
        if head
            .insert_header(http::header::AUTHORIZATION, token.clone())
            .is_err()
        {
            return false;
        }
    }
    target.is_none_or(|t| head.set_raw_path(t.as_bytes()).is_ok())
}

/// `service`'s own `Authorization` value when it has client credentials (`None` when it
/// has none: the client's stays); `Err` when its token cannot be had now.
async fn token(runtime: &Runtime, service: usize) -> Result<Option<HeaderValue>, ()> {
    let Some(source) = &runtime.credentials[service] else {
        return Ok(None);
    };
    source.authorization().await.map(Some).map_err(|_| ())
}

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
    let mut head = job.head;
    // As the client sent them, for a mismatch's sample (sensitive ones are redacted there).
    let method = head.method.clone();
    let request_headers = head.headers.clone();
    head.remove_header(&http::header::EXPECT);
    // Header values built by the gateway: cannot fail.
    let _ = head.insert_header(X_FICUS_SHADOW.clone(), HeaderValue::from_static("1"));
    let _ = head.insert_header(
        crate::proxy::headers::X_REQUEST_ID.clone(),
        job.request_id.clone(),
    );
    // The primary is asked a second time only for requests without side effects: a
    // copied POST must never reach production twice.
    let learn = method.is_safe()
        && shadow.compare.noise_sample() > 0.0
        && fastrand::f64() < shadow.compare.noise_sample();
    let again_head = learn.then(|| head.clone());
    let mut shadow_head = head;
    if let Some(target) = &job.shadow_target {
        if shadow_head.set_raw_path(target.as_bytes()).is_err() {
            record.shadow_error();
            return;
        }
    }
    let services = &job.runtime.services;
    // A service with client credentials gets its own token, as its primary traffic does.
    if !Box::pin(authorize(&mut shadow_head, &job.runtime, shadow.service)).await {
        return record.shadow_error();
    }
    let again_head = match again_head {
        Some(mut h) => Box::pin(authorize(&mut h, &job.runtime, job.primary_service))
            .await
            .then_some(h),
        None => None,
    };
    // Boxed: the exchange's future holds pingora's client session and is large; inline,
    // it would make every copy's task as large, and spawning it a large memory copy.
    let to_shadow = Box::pin(exchange(
        &services[shadow.service],
        shadow_head,
        job.request_body.clone(),
        shadow.timeout,
        shadow.max_body,
    ));
    let (answer, again) = match again_head {
        Some(h) => {
            let to_primary = Box::pin(exchange(
                &services[job.primary_service],
                h,
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
        method: method.as_str(),
        path: &job.path,
        headers: &request_headers,
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

/// Puts `service`'s own token in place of the client's `Authorization` when the service
/// has client credentials; `false` when its token cannot be had now.
async fn authorize(head: &mut RequestHeader, runtime: &Runtime, service: usize) -> bool {
    let Some(source) = &runtime.credentials[service] else {
        return true;
    };
    match source.authorization().await {
        Ok(v) => head.insert_header(http::header::AUTHORIZATION, v).is_ok(),
        Err(_) => false,
    }
}

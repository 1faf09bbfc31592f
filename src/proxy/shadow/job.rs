//! A shadow copy's job, off the request path: send the copy to the shadow service (and,
//! for a share of copies, the same request to the primary again to learn noise), then
//! compare and record. Holds its route's queue slot until done.

use bytes::Bytes;
use http::HeaderValue;
use pingora_http::RequestHeader;
use std::sync::Arc;

use super::exchange::{exchange, Answer, ExchangeError};
use crate::runtime::Runtime;
use crate::shadow::record::SampleRequest;
use crate::shadow::route::X_FICUS_SHADOW;
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
    let to_shadow = exchange(
        &services[shadow.service],
        shadow_head,
        job.request_body.clone(),
        shadow.timeout,
        shadow.max_body,
    );
    let (answer, again) = match again_head {
        Some(h) => {
            let to_primary = exchange(
                &services[job.primary_service],
                h,
                job.request_body.clone(),
                shadow.timeout,
                shadow.max_body,
            );
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
    let primary = view(&job.primary);
    if let Some(again) = &again {
        record.learn_noise(&shadow.compare, &primary, &view(again));
    }
    let request = SampleRequest {
        method: method.as_str(),
        path: &job.path,
        headers: &request_headers,
    };
    record.compare(&shadow.compare, &request, &primary, &view(&answer));
}

fn view(a: &Answer) -> Response<'_> {
    Response {
        status: a.status,
        headers: &a.headers,
        body: &a.body,
    }
}

//! Conversions between the data model ([`crate::datum`]) and the protobuf messages.
//!
//! Each kind has its own generated `Request`/`Result` types with the same fields; this
//! module is the one place that copies between them, in both directions, for the
//! servers and the clients alike.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost_types::Timestamp;

use crate::datum::{Datum, Message, Offset, SinkResponse, SinkStatus, SourceMessage};
use crate::proto::{map, reduce, sink, source, sourcetransformer};

/// A protobuf timestamp as a `SystemTime` (a missing or invalid one is the epoch).
pub fn to_time(ts: Option<&Timestamp>) -> SystemTime {
    let Some(ts) = ts else { return UNIX_EPOCH };
    let nanos = ts.nanos.clamp(0, 999_999_999) as u32;
    if ts.seconds >= 0 {
        UNIX_EPOCH + Duration::new(ts.seconds as u64, nanos)
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::new(ts.seconds.unsigned_abs(), 0))
            .and_then(|t| t.checked_add(Duration::from_nanos(u64::from(nanos))))
            .unwrap_or(UNIX_EPOCH)
    }
}

/// A `SystemTime` as a protobuf timestamp.
pub fn to_timestamp(time: SystemTime) -> Timestamp {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => Timestamp {
            seconds: d.as_secs() as i64,
            nanos: d.subsec_nanos() as i32,
        },
        Err(e) => {
            let d = e.duration();
            let mut seconds = -(d.as_secs() as i64);
            let mut nanos = -(d.subsec_nanos() as i32);
            if nanos < 0 {
                seconds -= 1;
                nanos += 1_000_000_000;
            }
            Timestamp { seconds, nanos }
        }
    }
}

pub fn datum_from_map(id: String, r: map::v1::map_request::Request) -> Datum {
    Datum {
        keys: r.keys,
        value: r.value,
        event_time: to_time(r.event_time.as_ref()),
        watermark: to_time(r.watermark.as_ref()),
        headers: r.headers.into_iter().collect(),
        id,
    }
}

pub fn map_request(datum: &Datum) -> map::v1::map_request::Request {
    map::v1::map_request::Request {
        keys: datum.keys.clone(),
        value: datum.value.clone(),
        event_time: Some(to_timestamp(datum.event_time)),
        watermark: Some(to_timestamp(datum.watermark)),
        headers: datum
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        metadata: None,
    }
}

pub fn map_result(m: Message) -> map::v1::map_response::Result {
    map::v1::map_response::Result {
        keys: m.keys,
        value: m.value,
        tags: m.tags,
        metadata: None,
    }
}

pub fn message_from_map(r: map::v1::map_response::Result) -> Message {
    Message {
        keys: r.keys,
        value: r.value,
        tags: r.tags,
    }
}

pub fn datum_from_transform(r: sourcetransformer::v1::source_transform_request::Request) -> Datum {
    Datum {
        keys: r.keys,
        value: r.value,
        event_time: to_time(r.event_time.as_ref()),
        watermark: to_time(r.watermark.as_ref()),
        headers: r.headers.into_iter().collect(),
        id: r.id,
    }
}

pub fn transform_request(
    datum: &Datum,
) -> sourcetransformer::v1::source_transform_request::Request {
    sourcetransformer::v1::source_transform_request::Request {
        keys: datum.keys.clone(),
        value: datum.value.clone(),
        event_time: Some(to_timestamp(datum.event_time)),
        watermark: Some(to_timestamp(datum.watermark)),
        headers: datum
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        id: datum.id.clone(),
        metadata: None,
    }
}

pub fn datum_from_reduce(r: reduce::v1::reduce_request::Payload) -> Datum {
    Datum {
        keys: r.keys,
        value: r.value,
        event_time: to_time(r.event_time.as_ref()),
        watermark: to_time(r.watermark.as_ref()),
        headers: r.headers.into_iter().collect(),
        id: String::new(),
    }
}

pub fn reduce_payload(datum: &Datum) -> reduce::v1::reduce_request::Payload {
    reduce::v1::reduce_request::Payload {
        keys: datum.keys.clone(),
        value: datum.value.clone(),
        event_time: Some(to_timestamp(datum.event_time)),
        watermark: Some(to_timestamp(datum.watermark)),
        headers: datum
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        metadata: None,
    }
}

pub fn datum_from_sink(r: sink::v1::sink_request::Request) -> Datum {
    Datum {
        keys: r.keys,
        value: r.value,
        event_time: to_time(r.event_time.as_ref()),
        watermark: to_time(r.watermark.as_ref()),
        headers: r.headers.into_iter().collect(),
        id: r.id,
    }
}

pub fn sink_request(datum: &Datum) -> sink::v1::sink_request::Request {
    sink::v1::sink_request::Request {
        keys: datum.keys.clone(),
        value: datum.value.clone(),
        event_time: Some(to_timestamp(datum.event_time)),
        watermark: Some(to_timestamp(datum.watermark)),
        id: datum.id.clone(),
        headers: datum
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        metadata: None,
    }
}

pub fn sink_result(r: SinkResponse) -> sink::v1::sink_response::Result {
    use sink::v1::Status;
    let mut out = sink::v1::sink_response::Result {
        id: r.id,
        ..Default::default()
    };
    match r.status {
        SinkStatus::Success => out.status = Status::Success as i32,
        SinkStatus::Failure(msg) => {
            out.status = Status::Failure as i32;
            out.err_msg = msg;
        }
        SinkStatus::Fallback => out.status = Status::Fallback as i32,
        SinkStatus::Serve(bytes) => {
            out.status = Status::Serve as i32;
            out.serve_response = Some(bytes);
        }
        SinkStatus::OnSuccess(message) => {
            out.status = Status::OnSuccess as i32;
            out.on_success_msg = message.map(|m| sink::v1::sink_response::result::Message {
                value: m.value,
                keys: m.keys,
                metadata: None,
            });
        }
    }
    out
}

pub fn sink_response_from(r: sink::v1::sink_response::Result) -> SinkResponse {
    use sink::v1::Status;
    let status = match Status::try_from(r.status) {
        Ok(Status::Success) => SinkStatus::Success,
        Ok(Status::Failure) => SinkStatus::Failure(r.err_msg),
        Ok(Status::Fallback) => SinkStatus::Fallback,
        Ok(Status::Serve) => SinkStatus::Serve(r.serve_response.unwrap_or_default()),
        Ok(Status::OnSuccess) => SinkStatus::OnSuccess(r.on_success_msg.map(|m| Message {
            keys: m.keys,
            value: m.value,
            tags: Vec::new(),
        })),
        Err(_) => SinkStatus::Failure(format!("unknown sink status {}", r.status)),
    };
    SinkResponse { id: r.id, status }
}

pub fn offset_to_proto(o: &Offset) -> source::v1::Offset {
    source::v1::Offset {
        offset: o.offset.clone(),
        partition_id: o.partition_id,
    }
}

pub fn offset_from_proto(o: source::v1::Offset) -> Offset {
    Offset {
        offset: o.offset,
        partition_id: o.partition_id,
    }
}

pub fn read_result(m: SourceMessage) -> source::v1::read_response::Result {
    source::v1::read_response::Result {
        payload: m.payload,
        offset: Some(offset_to_proto(&m.offset)),
        event_time: Some(to_timestamp(m.event_time)),
        keys: m.keys,
        headers: m.headers.into_iter().collect(),
        metadata: None,
    }
}

pub fn source_message_from(r: source::v1::read_response::Result) -> SourceMessage {
    SourceMessage {
        payload: r.payload,
        offset: r.offset.map(offset_from_proto).unwrap_or_default(),
        event_time: to_time(r.event_time.as_ref()),
        keys: r.keys,
        headers: r.headers.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_before_and_after_the_epoch() {
        for t in [
            UNIX_EPOCH + Duration::new(1_700_000_000, 123_000_000),
            UNIX_EPOCH - Duration::new(5, 250_000_000),
            UNIX_EPOCH,
        ] {
            assert_eq!(to_time(Some(&to_timestamp(t))), t);
        }
        assert_eq!(to_time(None), UNIX_EPOCH);
        assert_eq!(
            to_time(Some(&Timestamp {
                seconds: 1,
                nanos: -7
            })),
            UNIX_EPOCH + Duration::from_secs(1)
        );
    }

    #[test]
    fn sink_statuses_round_trip() {
        for r in [
            SinkResponse::success("a"),
            SinkResponse::failure("b", "disk full"),
            SinkResponse::fallback("c"),
        ] {
            assert_eq!(sink_response_from(sink_result(r.clone())), r);
        }
    }
}

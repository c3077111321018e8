//! The `otel` feature: the root span of each push (`intent_push`, see
//! [`crate::trace`]) and the events inside it, exported to an
//! OpenTelemetry collector over OTLP/HTTP (protobuf) by a batch exporter
//! on its own thread. Only the target [`crate::trace::TARGET`] reaches
//! it, whatever `RUST_LOG` prints on stderr.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::error::Error;

/// The exporter behind a [`layer`]: [`Exporter::shutdown`] sends what
/// it still holds.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Flushes the spans not sent yet and stops the exporter's thread
    /// (blocks up to the exporter's timeout; call it once, at exit).
    pub fn shutdown(self) {
        // The blocking HTTP client must not run on an async worker.
        let provider = self.provider;
        let flushed = std::thread::spawn(move || provider.shutdown()).join();
        if let Ok(Err(e)) = flushed {
            eprintln!("logsync-server: OpenTelemetry export at shutdown: {e}");
        }
    }
}

/// The traces URL of `endpoint`: as given when it has a path, else with
/// the OTLP default path `/v1/traces`.
pub fn traces_url(endpoint: &str) -> Result<String, Error> {
    let bad = |why: &str| Error::Config(format!("--otlp-endpoint {endpoint:?}: {why}"));
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .ok_or_else(|| bad("an http:// or https:// URL is expected"))?;
    match rest.find('/') {
        None => Ok(format!("{endpoint}/v1/traces")),
        Some(0) => Err(bad("the URL has no host")),
        Some(i) if rest[i..] == *"/" => Ok(format!("{endpoint}v1/traces")),
        Some(_) => Ok(endpoint.to_string()),
    }
}

/// A layer exporting the intent spans to the collector at `endpoint`,
/// and its exporter.
pub fn layer<S>(endpoint: &str) -> Result<(impl Layer<S>, Exporter), Error>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let url = traces_url(endpoint)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .build()
        .map_err(|e| Error::Config(format!("--otlp-endpoint {endpoint:?}: {e}")))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name("logsync-server")
                .build(),
        )
        .build();
    let tracer = provider.tracer("logsync-server");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(Targets::new().with_target(crate::trace::TARGET, Level::DEBUG));
    Ok((layer, Exporter { provider }))
}

#[cfg(test)]
mod tests {
    use super::traces_url;

    #[test]
    fn the_traces_path_is_added_only_when_there_is_none() {
        assert_eq!(
            traces_url("http://c:4318").unwrap(),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/").unwrap(),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://c/otlp/v1/traces").unwrap(),
            "https://c/otlp/v1/traces"
        );
        assert!(traces_url("c:4318").is_err());
        assert!(traces_url("http:///v1").is_err());
    }
}

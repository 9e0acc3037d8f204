//! OpenAPI 3.1 documents of a Flow's services, served at
//! `GET /openapi/SERVICE.json`.
//!
//! Each endpoint's request and response types describe themselves
//! ([`schemars::JsonSchema`], derived next to `Deserialize`/`Serialize`): the
//! path's captures become path parameters, the request's other fields query
//! parameters for `GET`, `DELETE` and `HEAD` and the JSON body for the other
//! methods; the response is the `200` answer, and every endpoint documents the
//! `400`/`422` answers of a request that does not fit (`{"error", "field"}`).
//! The types' schemas are shared under `components/schemas`.

use axum::http::Method;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};

/// What one endpoint says of itself.
pub(crate) struct EndpointDoc {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) schemas: fn(&mut SchemaGenerator) -> (Schema, Schema),
}

/// The schemas of `Req` and `Resp`, as references into the generator's
/// definitions where they are named types.
pub(crate) fn schemas_of<Req: JsonSchema, Resp: JsonSchema>(
    generator: &mut SchemaGenerator,
) -> (Schema, Schema) {
    (
        generator.subschema_for::<Req>(),
        generator.subschema_for::<Resp>(),
    )
}

/// The document of `service`, from its endpoints.
pub(crate) fn document(service: &str, endpoints: &[&EndpointDoc]) -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    let mut generator = settings.into_generator();
    let mut paths = Map::new();
    let mut described = Vec::new();
    for endpoint in endpoints {
        let (request, response) = (endpoint.schemas)(&mut generator);
        described.push((endpoint, request.to_value(), response.to_value()));
    }
    let mut schemas = generator.take_definitions(true);
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "properties": {
                "error": { "type": "string", "description": "What was wrong." },
                "field": { "type": "string", "description": "The request's field to blame, when one is." },
            },
            "required": ["error"],
        }),
    );
    for (endpoint, request, response) in described {
        let captures: Vec<String> = endpoint
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|s| s.trim_start_matches('*').to_string())
            .collect();
        let resolved = resolve(&request, &schemas);
        let properties = resolved
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let required: Vec<String> = resolved
            .get("required")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let mut parameters = Vec::new();
        for name in &captures {
            parameters.push(json!({
                "name": name,
                "in": "path",
                "required": true,
                "schema": properties.get(name).cloned().unwrap_or(json!({ "type": "string" })),
            }));
        }
        let body_method = !matches!(endpoint.method, Method::GET | Method::DELETE | Method::HEAD);
        if !body_method {
            for (name, schema) in &properties {
                if captures.contains(name) {
                    continue;
                }
                parameters.push(json!({
                    "name": name,
                    "in": "query",
                    "required": required.contains(name),
                    "schema": schema,
                }));
            }
        }
        let error = json!({ "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
        let mut operation = json!({
            "operationId": format!("{} {}", endpoint.method, endpoint.path),
            "parameters": parameters,
            "responses": {
                "200": {
                    "description": "The answer.",
                    "content": { "application/json": { "schema": response } },
                },
                "400": { "description": "The body or query cannot be read.", "content": error["content"].clone() },
                "422": { "description": "The request does not fit its type (the field is named).", "content": error["content"].clone() },
            },
        });
        if body_method {
            operation["requestBody"] = json!({
                "required": true,
                "content": { "application/json": { "schema": request } },
            });
        }
        let item = paths
            .entry(endpoint.path.clone())
            .or_insert_with(|| json!({}));
        item[endpoint.method.as_str().to_ascii_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": service, "version": "1" },
        "paths": paths,
        "components": { "schemas": schemas },
    })
}

/// `schema`, or what its `$ref` points at among `schemas`.
fn resolve<'a>(schema: &'a Value, schemas: &'a Map<String, Value>) -> &'a Value {
    match schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
    {
        Some(name) => schemas.get(name).unwrap_or(schema),
        None => schema,
    }
}

{#- Models land in the schema their folder names (staging, marts), not in <target>_<folder>,
    so dashboards and the report can query marts.* whatever the profile's default schema is. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}

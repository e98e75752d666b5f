{#- The revenue rule, decided once: an order's status counts as revenue when it is in
    var('revenue_statuses') (paid, shipped, delivered). Placed orders are not paid yet;
    cancelled and returned orders were paid back or never paid. -#}
{% macro revenue_statuses_sql() -%}
    {%- for status in var('revenue_statuses') -%}
        '{{ status }}'{{ ', ' if not loop.last }}
    {%- endfor -%}
{%- endmacro %}

{% macro is_revenue(status_column) -%}
    ({{ status_column }} in ({{ revenue_statuses_sql() }}))
{%- endmacro %}

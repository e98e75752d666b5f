{#- Fails on every combination of the given columns that occurs more than once: the grain check for
    marts whose key spans several columns (dbt_utils is not used, so the project builds offline). -#}
{% test unique_combination(model, columns) %}
select
    {{ columns | join(', ') }},
    count(*) as occurrences
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}

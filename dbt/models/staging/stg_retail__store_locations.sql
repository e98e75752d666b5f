with source as (
    select * from {{ source('retail', 'store_locations') }}
),

renamed as (
    select
        cast(store_id as bigint) as store_id,
        cast(name as varchar) as store_name,
        cast(city as varchar) as city,
        cast(region as varchar) as region,
        cast(country as varchar) as country,
        cast(latitude as double precision) as latitude,
        cast(longitude as double precision) as longitude,
        cast(opened_at as date) as opened_at,
        _airbyte_extracted_at as loaded_at
    from source
)

select * from renamed
